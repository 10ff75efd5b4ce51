"""Running recipes: the engine that turns a verified recipe into content-addressed variants, the
stage cache, the isolated worker and its pinned environments, reproduction and on-demand
evaluation. Top to bottom (the import-linter contract "The run room" in pyproject.toml):

    evaluate      on-demand evaluation of a recorded variant (`compressgate evaluate`)
    reproduce     a recorded run re-run from scratch, digests compared
    worker        the isolated worker's process and its end of the protocol
    engine        `RunOptions`, `execute` (and `run_recipe`), the `Executor` of seeds and stages
    prepared      a recipe read, parsed and verified once, handed down to the engine
    isolation     the parent's end of an isolated run, and the protocol
    judging       gates judged on a run record: each seed's judgement row, the decision
    across        each stage over the seeds: aggregates and exemplars
    cache         the stage cache, its keys, and the digest that lets `ci` reuse a run
    variants      the baseline built, stages applied, variants read back and measured
    determinism   deterministic kernels, fixed threads, seeding, canonical digests, timestamps
    envs          one virtual environment per lock, built once and reused
    environment   the running interpreter checked against a lock, and its fingerprint
"""
