"""Wall time per stage of the reference recipe, and the executor's own overhead (target ≤ 5%).

Runs the bundled digits recipe from scratch (no stage cache) in a scratch workspace, through
the same API call as `compressgate run`, after the heavy imports (timed and printed apart).
Model compute is what the stages and the evaluation after each one spend (training, pruning,
export, calibration, inference); everything else — signature and environment checks, the
fingerprint, data loading and digests, writing and re-reading artifacts, catalog writes — is
overhead. The one-off imports of a fresh process (torch, onnx, onnxruntime, the recipe's
own module with sklearn, and the torch._inductor config that the first switch to deterministic
kernels imports) are timed and printed apart. Exits 1 when the overhead is over target.

    python bench/stages.py [--seeds N]     # N seeds of the recipe (default: all three)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TARGET = 0.05

# This folder holds bench/evaluators.py, which would hide the `evaluators` package when this
# script runs with the folder first on sys.path: look packages up where they are installed.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    options = parser.parse_args()

    begin = time.perf_counter()
    import compressgate.recipes.examples.digits
    import compressgate.registry.run.engine  # noqa: F401  (torch, onnx, onnxruntime: a one-off per process)
    from compressgate.registry.run.determinism import THREADS, deterministic

    # torch.use_deterministic_algorithms imports torch._inductor.config on its first call
    # (about 1.7 s here): a one-off per process like the imports above, so it is counted
    # with them and not as the executor's overhead.
    with deterministic(THREADS):
        pass
    imports = time.perf_counter() - begin
    from compressgate.recipes.signing import sign_recipe
    from compressgate.recipes.trust import add_owner_key
    from compressgate.registry import Workspace
    from compressgate.registry.authoring import init_example
    from compressgate.registry.kernel.keys import generate_keypair, load_private_key

    with tempfile.TemporaryDirectory(prefix="compressgate-bench-") as scratch:
        root = Path(scratch) / "recipe"
        init_example(root, "digits")
        recipe = root / "recipe.yaml"
        seeds = ", ".join(str(s) for s in range(options.seeds))
        text = re.sub(r"seeds: \[.*\]", f"seeds: [{seeds}]", recipe.read_text())
        if options.seeds < 2:  # exemplars compare seeds: nothing to compare with one
            text = re.sub(r"\n *- kind: exemplars.*", "", text)
        recipe.write_text(text)
        _, _, public = generate_keypair("ml-platform", Path(scratch) / "keys")
        add_owner_key(root / "trust.yaml", "ml-platform", public, ("author",))
        for owner in ("ml-lead", "responsible-ai", "serving"):
            _, _, key = generate_keypair(owner, Path(scratch) / "keys")
            add_owner_key(root / "trust.yaml", owner, key, ("approver",))
        sign_recipe(recipe, load_private_key(Path(scratch) / "keys" / "ml-platform.key"))
        start = time.perf_counter()
        with Workspace(Path(scratch) / "ws") as ws:
            summary = ws.run(recipe, force=True)
        wall = time.perf_counter() - start

    per_stage: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for stage in summary.stages:
        per_stage[stage.name].append((stage.seconds, stage.eval_seconds))
    print(f"reference recipe, {options.seeds} seed(s), from scratch; mean per seed:")
    for name, times in per_stage.items():
        work = sum(t for t, _ in times) / len(times)
        evaluation = sum(e for _, e in times) / len(times)
        print(f"  {name:<10} stage {work:6.2f} s   evaluation {evaluation:5.2f} s")
    timing = summary.timing
    print(
        f"run {timing['total_seconds']:.1f} s (API call {wall:.1f} s): model compute "
        f"{timing['compute_seconds']:.1f} s, executor overhead {timing['overhead_seconds']:.2f} s"
    )
    print(f"one-off per process, not counted in the run: imports {imports:.1f} s")
    fraction = timing["overhead_fraction"]
    verdict = "ok" if fraction <= TARGET else "OVER TARGET"
    print(f"executor overhead: {fraction:.1%} of the run (target ≤ {TARGET:.0%}): {verdict}")
    return 0 if fraction <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
