"""Fairness gates by simulation: changes in max - min gaps, and the worst group's drop.

Every dataset is a binary task with equal-sized groups (codes 0..G-1 in turn), drawn cell by
cell: within a group and a label, each sample's (baseline, candidate) prediction pair is one
of (1, 1), (1, 0), (0, 1), (0, 0), with P(1, 0) = e + max(-δ, 0) and P(0, 1) = e + max(δ, 0),
so the candidate's rate is the baseline's plus δ and the two disagree on 2e + |δ| of the cell.
The real `Fairness().evaluate` computes every metric from softmax outputs of those
predictions, and `gates.verdicts.judge` judges `bound` gates on them (max 0.05, confidence
0.95: at most 5% false passes).

- Parity changes (`fairness.demographic_parity_difference_change`,
  `fairness.equalized_odds_difference_change`): a candidate exactly 0.05 worse. Fair
  baseline: every group selects with TPR 0.7 and FPR 0.1; the candidate raises group 0's TPR
  and FPR by 0.025 and lowers group 1's by as much (true changes 0.05). Unfair baseline: TPR
  0.65 to 0.75 and FPR 0.10 to 0.20 rising with the group (gaps 0.1); the candidate widens
  both by 0.05 (the highest group +0.025, the lowest -0.025). e = 0.02, P(y = 1) = 0.5.
  Coverage: the interval holds the true change (declared: its two-sided level, 90%).
- Worst-group drop (`fairness.worst_group_accuracy_drop`): group 0 loses 0.05 of accuracy
  (baseline 0.85), the others gain 0.05 (they pass surely: the least favourable case); and the
  power for a truly equal candidate (e = 0.01, the planning's 2% discordance) against what
  `gates.power.check_gate` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compressgate.evaluators import fairness
from compressgate.evaluators.paired import discordant
from compressgate.evaluators.results import Estimate, FairnessResult, GroupRow
from compressgate.gates.power import SampleSizes, check_gate
from compressgate.gates.verdicts import judge
from compressgate.recipes.evaluation import FairnessSpec
from compressgate.recipes.manifest import BoundGate
from tests.helpers.statsim.common import Options, Row

FAMILY = "fairness"
MAX = 0.05
SPEC = FairnessSpec(resamples=200)  # the changes and drops do not use the bootstrap
PARITY = ("demographic_parity_difference_change", "equalized_odds_difference_change")


def gate(metric: str, maximum: float = MAX) -> BoundGate:
    return BoundGate(
        name="g", owner="o", metric=f"fairness.{metric}", max=maximum, confidence=SPEC.confidence
    )


@dataclass(frozen=True)
class Cell:
    """One (group, label) cell: the baseline's rate of predicting 1, the candidate's change."""

    rate: float
    delta: float
    e: float


def pairs(rng: np.random.Generator, cells: Sequence[Cell], index: np.ndarray) -> np.ndarray:
    """(baseline, candidate) predictions, shape (n, 2), for samples of cells `index`."""
    p10 = np.array([c.e + max(-c.delta, 0.0) for c in cells])[index]
    p01 = np.array([c.e + max(c.delta, 0.0) for c in cells])[index]
    p11 = np.array([c.rate for c in cells])[index] - p10
    assert (p11 >= 0).all() and (p11 + p10 + p01 <= 1).all()
    u = rng.random(index.size)
    base = u < p11 + p10
    cand = (u < p11) | ((u >= p11 + p10) & (u < p11 + p10 + p01))
    return np.stack([base, cand], axis=1)


class World:
    """Datasets of `n` samples in `size` equal groups (codes 0..size-1 in turn)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size
        self.codes = np.arange(n) % size

    def changes(self, y: np.ndarray, base: np.ndarray, cand: np.ndarray) -> dict[str, Estimate]:
        """The gaps' changes as `Fairness().evaluate` reports them, by metric name."""
        found = fairness.gap_changes(y, base, cand, self.codes, self.size, 2, SPEC.interval_level)
        return {f"fairness.{name}": change for name, change in found.items()}

    def worst_drop(self, base_right: np.ndarray, right: np.ndarray) -> dict[str, Estimate]:
        """`fairness.worst_group_accuracy_drop` as `Fairness().evaluate` reports it."""
        _, worst = fairness.group_drops(
            base_right, right, self.codes, self.size, SPEC.interval_level
        )
        return {"fairness.worst_group_accuracy_drop": worst}

    def worst_drop_judged(self, gate: BoundGate, base_right: np.ndarray, right: np.ndarray) -> bool:
        """Whether `judge` passes `gate` on the worst drop and on the per-group counts the
        fairness evaluator records with it (what the judge reads: `gates.verdicts`)."""
        rows = []
        for code in range(self.size):
            mask = self.codes == code
            b, c, m = discordant(base_right[mask], right[mask])
            rows.append(GroupRow.model_construct(name=str(code), n=m, b=b, c=c))
        evaluations = {"fairness": FairnessResult.model_construct(groups=rows)}
        return judge(gate, self.worst_drop(base_right, right), {}, evaluations).verdict == "pass"


def parity_data(
    rng: np.random.Generator, world: World, fair: bool, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, baseline and candidate predictions for a candidate whose `metric` gap is 0.05
    wider: demographic parity by moving both TPR and FPR, equalized odds the TPR alone."""
    size = world.size
    high, low = (0, 1) if fair else (size - 1, 0)
    cells = []  # index: 2 * group + label
    for g in range(size):
        step = 0.0 if fair else 0.10 * g / (size - 1)
        delta = 0.025 if g == high else (-0.025 if g == low else 0.0)
        tpr = 0.70 if fair else 0.65 + step
        fpr_delta = delta if metric == "demographic_parity_difference_change" else 0.0
        cells += [Cell(0.10 + step, fpr_delta, 0.02), Cell(tpr, delta, 0.02)]
    y = (rng.random(world.n) < 0.5).astype(np.int64)
    predictions = pairs(rng, cells, 2 * world.codes + y)
    return y, predictions[:, 0], predictions[:, 1]


def drop_data(
    rng: np.random.Generator, world: World, drop: float, e: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, was the baseline right, was the candidate: group 0 loses `drop` of accuracy
    (0.85), the others gain 0.05 if `drop` > 0."""
    gain = 0.05 if drop > 0 else 0.0
    cells = [Cell(0.85, -drop if g == 0 else gain, e) for g in range(world.size)]
    right = pairs(rng, cells, world.codes)
    return right[:, 0], right[:, 1]


def parity_rows(options: Options, n: int, size: int, fair: bool, salt: int) -> list[Row]:
    world = World(n, size)
    reps = options.reps(1000)
    rows = []
    for offset, name in enumerate(PARITY):
        rng = np.random.default_rng([options.seed, salt, offset])
        metric = f"fairness.{name}"
        passed = covered = 0
        for _ in range(reps):
            metrics = world.changes(*parity_data(rng, world, fair, name))
            change = metrics[metric]
            passed += judge(gate(name), metrics, {}, {}).verdict == "pass"
            covered += change.ci_low <= MAX <= change.ci_high
        baseline = "fair" if fair else "unfair (gaps 0.1)"
        case = f"{name}: {baseline} baseline, {size} groups, change 0.05"
        rows.append(Row(FAMILY, case, "false pass", 0.05, passed / reps, reps, n))
        rows.append(Row(FAMILY, case, "coverage", SPEC.interval_level, covered / reps, reps, n))
    return rows


def drop_rows(options: Options, n: int, size: int, salt: int) -> list[Row]:
    rng = np.random.default_rng([options.seed, salt])
    world = World(n, size)
    reps = options.reps(2000)
    worst = gate("worst_group_accuracy_drop")
    boundary = sum(
        world.worst_drop_judged(worst, *drop_data(rng, world, MAX, 0.01)) for _ in range(reps)
    )
    rows = [
        Row(
            FAMILY,
            f"worst_group_accuracy_drop: one of {size} groups drops 0.05, the others gain 0.05",
            "false pass",
            0.05,
            boundary / reps,
            reps,
            n,
        )
    ]
    sizes = SampleSizes(
        test=n, groups={f"g{k}": int(np.sum(world.codes == k)) for k in range(size)}
    )
    check = check_gate(worst, sizes, confidence={"fairness": SPEC.confidence})
    assert check is not None and check.power is not None
    equal = sum(
        world.worst_drop_judged(worst, *drop_data(rng, world, 0.0, 0.01)) for _ in range(reps)
    )
    rows.append(
        Row(
            FAMILY,
            f"worst_group_accuracy_drop: {size} groups, truly equal, 2% discordance",
            "power",
            check.power,
            equal / reps,
            reps,
            n,
            note="declared: gates.power.check_gate",
        )
    )
    return rows


def rows(options: Options) -> list[Row]:
    found: list[Row] = []
    salt = 0
    for n, sizes in ((100, (2,)), (450, (2, 4)), (2000, (2, 4))):
        for size in sizes:
            for fair in (True, False):
                salt += 1
                found += parity_rows(options, n, size, fair, salt)
    for n in (450, 2000):
        for size in (2, 4):
            salt += 1
            found += drop_rows(options, n, size, salt)
    return found
