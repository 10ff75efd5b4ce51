"""How long `compressgate --help` takes, start to exit (target: under 0.5 s).

Runs the installed console script as a user would: one warm-up run (the first run after an
install compiles our modules to bytecode), then several timed runs. Prints the median and the
worst; exits 1 when the median misses the target (the worst is reported, not judged: one slow
run on a shared machine is noise).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
TARGET_S = 0.5


def main() -> int:
    exe = Path(sys.executable).parent / "compressgate"
    subprocess.run([exe, "--help"], check=True, capture_output=True)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    median, worst = statistics.median(times), max(times)
    verdict = "ok" if median < TARGET_S else "OVER TARGET"
    print(
        f"compressgate --help: median {median * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
        f"over {RUNS} runs (target < {TARGET_S * 1000:.0f} ms): {verdict}"
    )
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
