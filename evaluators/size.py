"""Size: bytes on disk, parameters, non-zero parameters, MACs, and the peak memory of a session.

Bytes are the artifact's, external data included, and the ratio divides them by the baseline's
float32 ONNX export (the yardstick every stage is measured against; an ONNX baseline is its own
yardstick). Parameters and MACs are counted on the torch module (`torch.utils.flop_counter`,
MACs = FLOPs / 2, for one sample); an ONNX variant is counted on its float torch ancestor, which
has the same architecture. Peak memory is measured for ONNX variants in a fresh Python process:
the growth of its peak resident set (VmHWM, after resetting it to the current VmRSS through
/proc/self/clear_refs) from creating an onnxruntime session and running one batch, so that
neither this process's pages nor the imports' transient peak are counted. (`ru_maxrss` would
not do: a child inherits its parent's peak across fork and exec.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject
from compressgate.evaluators.results import Estimate, SizeResult
from compressgate.recipes import models
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import SizeSpec
from compressgate.recipes.models import OnnxModel

_MEMORY_BATCH = 32
# The child resets its peak resident set to the current one (Linux's /proc/self/clear_refs,
# "5"), so neither the parent's pages nor the imports' transient peak are counted: the growth
# of VmHWM over VmRSS is what the session and one run cost.
_PROBE = """
import json, sys
import numpy as np
import onnxruntime as ort

def status(key):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(key + ":"):
                return int(line.split()[1])

x = np.load(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = status("VmRSS")
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
session.run(None, {session.get_inputs()[0].name: x})
print(json.dumps({"before_kib": before, "peak_kib": status("VmHWM")}))
"""


def peak_session_memory(model: OnnxModel, batch: np.ndarray) -> int:
    """Bytes by which a fresh process's peak resident set grows when it creates an
    onnxruntime session on `model` and runs `batch` through it (Linux)."""
    with tempfile.TemporaryDirectory(prefix="compressgate-memory-") as scratch:
        inputs = Path(scratch) / "x.npy"
        np.save(inputs, batch)
        done = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE, str(model.path), str(inputs)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the memory probe failed: {done.stderr.strip()[-500:]}")
    reading = json.loads(done.stdout.strip().splitlines()[-1])
    return max(0, int(reading["peak_kib"]) - int(reading["before_kib"])) * 1024


def _count(value: int) -> Estimate:
    return Estimate.exact(float(value), higher_is_better=False)


@EVALUATORS.register("size")
class Size(Evaluator[SizeSpec]):
    kind = "size"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: SizeSpec,
        ctx: EvalContext,
    ) -> SizeResult:
        reference = baseline or candidate
        yardstick = reference.onnx_size_bytes or reference.size_bytes
        what = (
            "the baseline's float32 ONNX export"
            if reference.onnx_size_bytes
            else "the baseline's artifact"
        )
        result = SizeResult(
            reference=f"{what} ({yardstick} bytes)",
            bytes=Estimate.exact(float(candidate.size_bytes), unit="bytes", higher_is_better=False),
            ratio=Estimate.exact(candidate.size_bytes / yardstick, higher_is_better=False),
            times_smaller=Estimate.exact(
                yardstick / candidate.size_bytes, unit="x", higher_is_better=True
            ),
        )
        counted = candidate.counts_from
        if counted is not None:
            example = splits.test.x
            result = result.model_copy(
                update={
                    "params": _count(models.parameter_count(counted.module)),
                    "nonzero_params": _count(models.nonzero_parameter_count(counted.module)),
                    "macs": _count(models.macs(counted.module, example)),
                    "counts_from": "the variant"
                    if counted is candidate.variant
                    else "its float torch ancestor (same architecture)",
                }
            )
        if not spec.memory:
            return result
        if candidate.onnx is None:
            return result.model_copy(
                update={"memory_note": "measured for ONNX variants only (this one is torch)"}
            )
        batch = np.ascontiguousarray(
            splits.test.x.numpy()[np.resize(np.arange(len(splits.test)), _MEMORY_BATCH)]
        )
        peak = memory_of(candidate, batch)
        update: dict[str, object] = {
            "peak_memory_bytes": Estimate(
                estimate=float(peak),
                ci_low=float(peak),
                ci_high=float(peak),
                n=1,
                method=f"peak RSS growth of a fresh process (session + one batch of "
                f"{_MEMORY_BATCH}, VmHWM - VmRSS); one measurement",
                unit="bytes",
                higher_is_better=False,
            ),
            "memory_note": f"batch of {_MEMORY_BATCH}, one intra-op thread"
            + ("" if candidate.onnx is candidate.variant else ", of its float32 ONNX export"),
        }
        if reference.onnx is not None and reference is not candidate:
            base_peak = memory_of(reference, batch)
            if base_peak > 0:
                update["peak_memory_ratio"] = Estimate.exact(
                    peak / base_peak, higher_is_better=False
                ).model_copy(update={"method": "ratio of two single measurements"})
        return result.model_copy(update=update)


def memory_of(subject: Subject, batch: np.ndarray) -> int:
    """The subject's session peak memory, measured once per subject and kept."""
    key = f"peak-memory:{batch.shape[0]}"
    if key not in subject.measurements:
        assert subject.onnx is not None
        subject.measurements[key] = float(peak_session_memory(subject.onnx, batch))
    return int(subject.measurements[key])
