"""Acceptance of the MiniLM example (slow, about three minutes): the pretrained sentence
embedder runs through export and per-channel dynamic int8 with nothing but the packages on disk
(inside an empty network namespace where `unshare -n` can make one), stays close to the float
model's embeddings, shrinks, and says so in its report. Speed is `bench/minilm.py`'s to time
and the full recipe's gate to judge (`make demo-minilm`); no test times anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.offline import offline, signed_example

# The example at a smaller scale: 300 test sentences, batch 1 timed briefly.
SMALLER = {
    "args: {limit: 1000,": "args: {limit: 300,",
    "    batch_sizes: [1, 32]\n": "    batch_sizes: [1]\n",
    "    repeats: 400": "    repeats: 30",
    "    batch_repeats: {32: 20}": "",
}


def _recipe(tmp_path: Path) -> Path:
    return signed_example(tmp_path, "minilm-int8", SMALLER)


@pytest.mark.slow
def test_minilm_int8_stays_close_to_the_float_model_offline_and_reports_its_choice(
    tmp_path: Path,
) -> None:
    recipe = _recipe(tmp_path)
    script = str(Path(sys.executable).parent / "compressgate")
    cache = tmp_path / "cg"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no proxy, no HF cache to lean on
    command = offline([script, "run", str(recipe), "--workspace", str(cache), "--json"])
    done = subprocess.run(command, capture_output=True, env=env, check=False)
    result = json.loads(done.stdout)
    verdicts = {d["gate"]: d for d in result["gates"]}
    # Fidelity and size must pass; the speed gate's verdict at 30 timed calls is not asserted.
    assert done.returncode in (0, 1), done.stderr.decode()
    for gate in ("fidelity", "tail", "size"):
        assert verdicts[gate]["verdict"] == "pass", verdicts[gate]
    stages = {s["name"]: s for s in result["stages"]}
    int8 = stages["int8"]["metrics"]
    assert int8["cosine.mean"]["ci_low"] >= 0.99
    assert int8["cosine.p1"]["ci_low"] >= 0.98
    assert 0 < int8["cosine.min"]["estimate"] <= int8["cosine.p1"]["estimate"]
    assert int8["size.ratio"]["estimate"] <= 1 / 3.5
    assert int8["size.times_smaller"]["estimate"] == pytest.approx(
        1 / int8["size.ratio"]["estimate"], rel=1e-12
    )
    assert 0.5 < int8["retrieval.overlap_at_k"]["estimate"] < 1
    assert "accuracy" not in int8  # an embedding model has no labels to be accurate about
    export = stages["export"]["metrics"]
    assert export["cosine.min"]["estimate"] > 0.9999  # float ONNX equals torch
    if offline(["true"]) != ["true"]:
        assert "unshare" in command[0]

    # The run records the corpus and its digest; the report names the quantization chosen.
    shown = subprocess.run(
        [script, "catalog", "show", result["run_id"], "--workspace", str(cache), "--json"],
        capture_output=True,
        check=True,
    )
    data = json.loads(shown.stdout)["data"]["0"]
    assert (
        len(data["corpus_sha256"]) == 64 and "docstrings of the standard library" in data["corpus"]
    )
    report = tmp_path / "report.md"
    subprocess.run(
        [
            script,
            "report",
            result["run_id"],
            "--workspace",
            str(cache),
            "--format",
            "md",
            "-o",
            str(report),
        ],
        check=True,
        capture_output=True,
    )
    text = report.read_text()
    assert "dynamic int8, per-channel weights" in text
    assert "cosine to baseline, mean [CI]" in text
