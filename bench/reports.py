"""How long `compressgate report` takes for a large run: 20 stages × 3 seeds.

Target (issue 7): the HTML audit report of a run with 20 stages and 3 seeds renders in at most
2 s. A small digits recipe is run for real (3 seeds, every per-stage evaluator but robustness:
accuracy, paired, calibration, fairness, classes, fidelity, latency, size), untimed; its stage
records, evaluations included, are then repeated to make a run of 20 stages per seed, recorded
in a fresh catalog with its gate decisions, and the report API call (catalog read, review,
signature check, plots, template) is timed for every format.

    python bench/reports.py [--repeat N]     # N timed renders per format (default 5; median)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where the other benches' names
# (evaluators.py, catalog.py) would hide packages of the same name: look them up where they are
# installed instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import statistics  # after the folder is dropped: bench/statistics.py would hide it

STAGES, SEEDS, TARGET_SECONDS = 20, 3, 2.0
# A small digits recipe (the tests' quick one, with three seeds): distill, prune, int8, export.
RECIPE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: digits-quick, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  args: {channels: [8, 16], hidden: 32}
  train: {epochs: 3, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
  args: {calibration_fraction: 0.15}
seeds: [0, 1, 2]
stages:
  - name: distill
    kind: distill
    student:
      factory: compressgate.recipes.examples.digits:build_student
      args: {channels: [6, 12], hidden: 24}
    epochs: 4
    lr: 0.003
  - name: prune
    kind: prune
    method: structured
    scope: layer
    sparsity: 0.5
    rounds: 2
    finetune_epochs: 1
    skip: []
  - name: int8
    kind: quantize
    method: static
    calibration_samples: 64
  - name: export
    kind: export
"""
EVALUATORS = """\
evaluators:
  - {kind: accuracy}
  - {kind: paired}
  - {kind: calibration}
  - {kind: fairness}
  - {kind: classes}
  - {kind: fidelity}
  - {kind: latency, batch_sizes: [1], repeats: 50, warmup: 5}
  - {kind: size}
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: non_inferior, margin: 0.15}
  - {name: fairness, owner: responsible-ai, metric: fairness.worst_group_accuracy_drop,
     rule: bound, max: 0.5, approval: required}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()

    from compressgate.recipes.signing import sign_recipe
    from compressgate.recipes.trust import add_owner_key
    from compressgate.registry import Workspace
    from compressgate.registry.authoring import init_example
    from compressgate.registry.catalog.records import RunRecord
    from compressgate.registry.catalog.repository import Catalog, catalog_url
    from compressgate.registry.kernel.keys import generate_keypair, load_private_key
    from compressgate.registry.run.judging import judge_for_catalog as judge_gate

    with tempfile.TemporaryDirectory(prefix="cg-bench-reports-") as scratch:
        root = Path(scratch) / "ws"
        init_example(root, "digits")
        keys = Path(scratch) / "keys"
        roles = [("ml-platform", "author"), ("ml-lead", "approver"), ("responsible-ai", "approver")]
        for owner, role in roles:
            _, _, public = generate_keypair(owner, keys)
            add_owner_key(root / "trust.yaml", owner, public, (role,))  # type: ignore[arg-type]
        recipe = root / "recipe.yaml"
        recipe.write_text(RECIPE + EVALUATORS)
        sign_recipe(recipe, load_private_key(keys / "ml-platform.key"))
        store = root / ".cg"
        started = time.perf_counter()
        with Workspace(store, trust=root / "trust.yaml") as ws:
            ran = ws.run(recipe)
        took = time.perf_counter() - started
        print(f"the real run: {len(ran.stages)} stage records in {took:.1f} s")

        with Catalog(catalog_url(store), create=False) as catalog:
            real = catalog.run(ran.run_id)
            content = catalog.recipe(real.recipe.sha256)
        big = RunRecord.model_validate(
            {**real.model_dump(mode="json"), "run_id": "run-20261123T000000Z-b1b1b1", "stages": []}
        )
        for seed in real.seeds:
            mine = [s for s in real.stages if s.seed == seed]
            big.stages.append(mine[0])
            for index in range(1, STAGES):
                source = mine[1 + (index - 1) % (len(mine) - 1)]
                big.stages.append(source.model_copy(update={"name": f"stage-{index:02d}"}))
        big.status = "succeeded"
        url = catalog_url(Path(scratch) / "big")
        with Catalog(url) as catalog:
            catalog.record_run_start(
                big, recipe_content=content.content, envelope=content.envelope, lock_sha256=""
            )
            for stage in big.stages:
                catalog.record_stage(big.run_id, big.recipe.sha256, stage, {"name": stage.name})
            decisions, verdicts = [], []
            from compressgate.recipes.load import parse_recipe

            parsed, _ = parse_recipe(content.content.encode("utf-8"), "recipe")
            for gate in parsed.gates:
                each, decision = judge_gate(gate, big, f"stage-{STAGES - 1:02d}")
                decisions += each
                verdicts.append(decision)
            catalog.record_run_end(big, decisions, verdicts)

        print(
            f"report of a run of {STAGES} stages x {SEEDS} seeds ({len(big.stages)} stage "
            f"records with their evaluations); median of {options.repeat} renders:"
        )
        ok = True
        for fmt in ("html", "md", "json", "card"):
            times, size = [], 0
            for _ in range(options.repeat + 1):  # the first render warms the imports up
                begin = time.perf_counter()
                with Workspace(store, catalog=url, trust=root / "trust.yaml") as ws:
                    body = ws.report(big.run_id, fmt)
                times.append(time.perf_counter() - begin)
                size = len(body)
            median = statistics.median(times[1:])
            verdict = ""
            if fmt == "html":
                ok = median <= TARGET_SECONDS
                verdict = f" (target ≤ {TARGET_SECONDS:g} s): {'ok' if ok else 'MISS'}"
            print(
                f"  {fmt:<5} {median:6.3f} s, worst {max(times[1:]):.3f} s, {size:,} bytes{verdict}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
