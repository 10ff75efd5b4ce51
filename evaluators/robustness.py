"""Robustness: the same comparisons again on shifted test inputs, severity by severity.

Compression can keep clean accuracy and lose it under a shift. Each shift the recipe declares
is applied to the test inputs, deterministically from the run seed (the same shifted inputs
for every stage of a seed): `gaussian_noise` adds N(0, σ²) noise (σ the severity, in input
units; no clipping), `occlusion` zeroes a square patch covering that fraction of each image
(at a random position per sample), or that fraction of the features of a flat input. On each:
accuracy (Wilson), the paired difference from the baseline under the same shift (Tango),
top-label ECE (bootstrap) and agreement with the baseline (Wilson).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from compressgate.evaluators.base import (
    EVALUATORS,
    EvalContext,
    Evaluator,
    Subject,
    bootstrapped,
    extreme,
    wilson,
)
from compressgate.evaluators.calibration import ece, top_label_columns, top_label_measures
from compressgate.evaluators.paired import discordant, tango_estimate
from compressgate.evaluators.results import Estimate, RobustnessResult, ShiftRow
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import RobustnessSpec

_RESAMPLES = 2000


def shift_inputs(x: torch.Tensor, kind: str, severity: float, seed: int) -> torch.Tensor:
    """`x` under one shift, drawn from `seed`."""
    if not torch.is_floating_point(x):
        raise ValueError(f"shifts need floating-point inputs, got {x.dtype}")
    generator = torch.Generator().manual_seed(seed)
    if kind == "gaussian_noise":
        return x + severity * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if kind != "occlusion":
        raise ValueError(f"unknown shift {kind!r}")
    n = x.shape[0]
    if x.ndim >= 3:  # images: (n, [channels,] height, width)
        height, width = x.shape[-2], x.shape[-1]
        h = max(1, round(math.sqrt(severity) * height))
        w = max(1, round(math.sqrt(severity) * width))
        top = torch.randint(0, height - h + 1, (n,), generator=generator)
        left = torch.randint(0, width - w + 1, (n,), generator=generator)
        rows = torch.arange(height)[None, :]
        cols = torch.arange(width)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + h)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + w)
        patch = in_rows[:, :, None] & in_cols[:, None, :]
        patch = patch.reshape(n, *([1] * (x.ndim - 3)), height, width)
        return x.masked_fill(patch, 0.0)
    flat = x.reshape(n, -1)
    k = max(1, round(severity * flat.shape[1]))
    chosen = torch.rand(flat.shape, generator=generator).argsort(dim=1)[:, :k]
    mask = torch.zeros(flat.shape, dtype=torch.bool).scatter_(1, chosen, True)
    return flat.masked_fill(mask, 0.0).reshape(x.shape)


@EVALUATORS.register("robustness")
class Robustness(Evaluator[RobustnessSpec]):
    kind = "robustness"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: RobustnessSpec,
        ctx: EvalContext,
    ) -> RobustnessResult:
        test = splits.test
        y = test.y.numpy().astype(np.int64)
        n = len(y)
        if not torch.is_floating_point(test.x):
            raise ctx.error(
                self.kind,
                f"the test inputs are {test.x.dtype}; shifts need floating-point inputs",
                hint="remove the robustness evaluator for this data",
            )
        boot = ctx.bootstrap(_RESAMPLES)
        rows: list[ShiftRow] = []
        counts: list[tuple[int, int]] = []
        for shift in spec.shifts:
            for level, severity in enumerate(shift.severities, start=1):
                key = f"{shift.kind}:{severity!r}"
                x = shift_inputs(test.x, shift.kind, severity, ctx.seed_for(key))
                probs = candidate.probabilities(x, key)
                predicted = probs.argmax(axis=1)
                correct = predicted == y
                replicates = top_label_measures(
                    boot.totals(top_label_columns(probs, y, spec.bins)), spec.bins
                )["ece"]
                row = ShiftRow(
                    kind=shift.kind,
                    level=level,
                    severity=severity,
                    accuracy=wilson(int(correct.sum()), n, spec.interval_level),
                    ece=bootstrapped(
                        ece(probs, y, spec.bins),
                        replicates,
                        n,
                        spec.interval_level,
                        higher_is_better=False,
                    ),
                )
                if baseline is not None:
                    base_predicted = baseline.probabilities(x, key).argmax(axis=1)
                    b, c, _ = discordant(base_predicted == y, correct)
                    counts.append((b, c))
                    row = row.model_copy(
                        update={
                            "baseline_accuracy": float(np.mean(base_predicted == y)),
                            "accuracy_difference": tango_estimate(b, c, n, spec.interval_level),
                            "agreement": wilson(
                                int(np.sum(base_predicted == predicted)), n, spec.interval_level
                            ),
                            "b": b,
                            "c": c,
                        }
                    )
                rows.append(row)
        return RobustnessResult(shifts=rows, worst_accuracy_difference=_worst(counts, n, spec))


def _worst(counts: list[tuple[int, int]], n: int, spec: RobustnessSpec) -> Estimate | None:
    """The lowest difference over all shifts: its lower end (what a `min` bound reads) the lowest
    of each shift's own Tango bound, which errs only if the truly worst shift's does; its upper
    end simultaneous over the shifts (Bonferroni) (`extreme`)."""
    if not counts:
        return None
    each = 1 - (1 - spec.interval_level) / len(counts)
    return extreme(
        [tango_estimate(b, c, n, spec.interval_level) for b, c in counts],
        lowest=True,
        n=n,
        confidence=spec.interval_level,
        method="minimum of paired tango intervals: lower end the lowest of each shift's own "
        f"one-sided {spec.confidence:.1%} bound, upper end simultaneous over {len(counts)} "
        "shifts (bonferroni)",
        simultaneous=[tango_estimate(b, c, n, each) for b, c in counts],
    )
