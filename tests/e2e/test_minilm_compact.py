"""Acceptance of the compact MiniLM recipe at a small size (slow): distilled into 3 layers on
unlabelled text, heads, channels and token-table rows pruned, exported with a dynamic sequence
axis and quantized, inside an empty network namespace where `unshare -n` can make one; then
reproduced from scratch, bit for bit, offline too. The full recipe's figures are
`make demo-minilm-compact`'s; no test times anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.offline import offline, signed_example

# 60 test and 240 training sentences, batch 1 timed briefly: what is checked is what each stage
# does and that it reproduces, not the quality a few hundred sentences can teach.
SMALLER = {
    "args: {limit: 1000, max_tokens: 128, calibration: 0, train: 4000,": (
        "args: {limit: 60, max_tokens: 128, calibration: 0, train: 240,"
    ),
    "    batch_sizes: [1, 32]\n": "    batch_sizes: [1]\n",
    "    repeats: 400\n": "    repeats: 20\n",
    "    batch_repeats: {32: 20}": "",
}


def _recipe(tmp_path: Path) -> Path:
    return signed_example(tmp_path, "minilm-compact", SMALLER)


@pytest.mark.slow
def test_minilm_compact_compresses_offline_and_reproduces_bit_for_bit(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    script = str(Path(sys.executable).parent / "compressgate")
    cache = tmp_path / "cg"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no proxy, no HF cache to lean on
    command = offline([script, "run", str(recipe), "--workspace", str(cache), "--json"])
    done = subprocess.run(command, capture_output=True, env=env, check=False)
    assert done.returncode in (0, 1), done.stderr.decode()[-3000:]
    result = json.loads(done.stdout)
    stages = {s["name"]: s for s in result["stages"]}
    assert list(stages) == ["baseline", "distill", "prune", "export", "int8"]

    distill = stages["distill"]["details"]
    assert distill["objective"] == "embedding" and distill["train_samples"] == 240
    prune = stages["prune"]["details"]
    assert prune["heads_before"] == [12, 12, 12] and prune["heads_after"] == [9, 9, 9]
    assert prune["channels_before"] == [1536] * 3 and prune["channels_after"] == [768] * 3
    assert prune["vocabulary_rows_before"] == 30522
    assert 16000 <= prune["vocabulary_rows_after"] <= 16000 + prune["vocabulary_train_tokens"]

    int8, export = stages["int8"]["metrics"], stages["export"]["metrics"]
    # The float ONNX export computes what the pruned torch model does; int8 costs little more.
    assert stages["export"]["details"]["parity_max_abs_diff"] <= 1e-4
    assert int8["cosine.mean"]["estimate"] > export["cosine.mean"]["estimate"] - 0.02
    assert int8["size.times_smaller"]["estimate"] >= 8
    assert stages["int8"]["details"]["int8_layers"] == stages["int8"]["details"]["weighted_layers"]
    bundle = subprocess.run(
        [script, "report", result["run_id"], "--workspace", str(cache), "--format", "json"],
        capture_output=True,
        check=True,
    )
    recorded = {s["name"]: s for s in json.loads(bundle.stdout)["run"]["stages"]}
    latency = recorded["int8"]["evaluations"]["latency"]["batches"][0]
    lengths = latency["sequence_lengths"]
    # Timed at the sentences' own lengths, one sentence a call at batch 1.
    assert lengths["stored"] == 128 and lengths["max"] < 128 and lengths["batches"] == 60
    verdicts = {d["gate"]: d["verdict"] for d in result["gates"]}
    assert verdicts["size"] == "pass"

    again = subprocess.run(
        offline([script, "reproduce", result["run_id"], "--workspace", str(cache), "--json"]),
        capture_output=True,
        env=env,
        check=False,
    )
    assert again.returncode == 0, again.stdout.decode()[-2000:] + again.stderr.decode()[-2000:]
    if offline(["true"]) != ["true"]:
        assert "unshare" in command[0]
