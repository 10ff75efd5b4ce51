"""Calibration measures' intervals and the gates on them, by simulation (issue 23, row 3).

The data come from a known calibration curve, so that every population value is an integral.
Each sample has a latent u ~ Beta(4, 1.5); the probability that the top class is right is
q = 1/K + (1 - 1/K) u. A model reports the top-label confidence c = 1/K + (1 - 1/K)
sigmoid(tau logit(u) + beta) on a top class drawn uniformly from K = 4, and (1 - c)/(K - 1) on
each other class; the label is the top class with probability q, else one of the others
uniformly. tau = 1, beta = 0 is perfectly calibrated; the "well" calibrated model (tau 1.15)
is slightly overconfident, the "badly" calibrated one (tau 2.2, beta 0.4) much more. Both
models see the same samples (the candidate is a compressed copy of the baseline: the same top
class, other confidences), so their changes are paired as in a real stage.

The population values are those of the estimands `evaluators/calibration.py` defines: binned
top-label ECE over the same 15 bins, sum over bins of |E[(correct - confidence) 1{c in bin}]|,
RMSCE = sqrt(sum of mean gap² × bin mass), class-wise ECE the same over each class's
probability, Brier and NLL expectations, all by numerical integration over u (scipy's quad).

Every dataset runs the real `Calibration().evaluate` twice: the bad model against the well
calibrated baseline and the other way round, so both models' intervals and both ends of each
change interval are checked. The gates are judged by `gates.verdicts.judge` with their
threshold at the true change: a `bound` on `calibration.ece_change` and on
`calibration.rmsce_change`, and a `relative` gate on `calibration.ece`; declared false pass
1 - confidence = 5%.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from tests.helpers.statsim.common import Options, Row

FAMILY = "calibration"
K = 4
BINS = 15
CONFIDENCE = 0.95
RESAMPLES = 500
SIZES = (100, 450, 2000)
BETA_A, BETA_B = 4.0, 1.5


@dataclass(frozen=True)
class Model:
    name: str
    tau: float
    beta: float

    def confidence(self, u: np.ndarray) -> np.ndarray:
        z = self.tau * np.log(u / (1 - u)) + self.beta
        return 1 / K + (1 - 1 / K) / (1 + np.exp(-z))

    def latent(self, c: float) -> float:
        """The u at which this model reports confidence c (clipped to [0, 1])."""
        v = (c - 1 / K) / (1 - 1 / K)
        if v <= 0:
            return 0.0
        if v >= 1:
            return 1.0
        z = (np.log(v / (1 - v)) - self.beta) / self.tau
        return float(1 / (1 + np.exp(-z)))


WELL = Model("well", 1.15, 0.0)
BAD = Model("bad", 2.2, 0.4)


def _q(u: np.ndarray) -> np.ndarray:
    return 1 / K + (1 - 1 / K) * u


def _integral(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float) -> float:
    from scipy import integrate, stats

    if hi <= lo:
        return 0.0
    density = stats.beta(BETA_A, BETA_B).pdf
    value, _ = integrate.quad(
        lambda u: float(f(np.array([u]))[0] * density(u)), lo, hi, limit=200, epsabs=1e-12
    )
    return float(value)


@cache
def truth(model: Model) -> dict[str, float]:
    """The population value of every measure of `model`, by numerical integration."""
    edges = np.arange(BINS + 1) / BINS
    top_gap, mass, cls_gap = [], [], []
    for m in range(BINS):
        lo, hi = model.latent(edges[m]), model.latent(edges[m + 1])
        top_gap.append(_integral(lambda u: _q(u) - model.confidence(u), lo, hi))
        mass.append(_integral(lambda u: np.ones_like(u), lo, hi))
        # Another class's probability (1 - c)/(K - 1) lies in the bin when c lies in
        # [1 - hi (K - 1), 1 - lo (K - 1)); there E[y - p] = (c - q)/(K - 1), with probability
        # (K - 1)/K that the class is not the top one.
        c_lo, c_hi = 1 - edges[m + 1] * (K - 1), 1 - edges[m] * (K - 1)
        other = _integral(
            lambda u: model.confidence(u) - _q(u), model.latent(c_lo), model.latent(c_hi)
        )
        cls_gap.append((top_gap[-1] + other) / K)
    gaps, weights = np.array(top_gap), np.array(mass)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.where(weights > 0, gaps**2 / weights, 0.0)

    def brier(u: np.ndarray) -> np.ndarray:
        c, q = model.confidence(u), _q(u)
        rest = (1 - c) / (K - 1)
        right = (1 - c) ** 2 + (K - 1) * rest**2
        wrong = c**2 + (1 - rest) ** 2 + (K - 2) * rest**2
        return np.asarray(q * right + (1 - q) * wrong)

    def nll(u: np.ndarray) -> np.ndarray:
        c, q = model.confidence(u), _q(u)
        return np.asarray(-(q * np.log(c) + (1 - q) * np.log((1 - c) / (K - 1))))

    return {
        "ece": float(np.abs(gaps).sum()),
        "rmsce": float(np.sqrt(rms.sum())),
        "classwise_ece": float(np.abs(cls_gap).sum()),
        "brier": _integral(brier, 0.0, 1.0),
        "nll": _integral(nll, 0.0, 1.0),
    }


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent u, top class and label of n samples."""
    u = rng.beta(BETA_A, BETA_B, n)
    u = np.clip(u, 1e-9, 1 - 1e-9)
    top = rng.integers(0, K, n)
    right = rng.random(n) < _q(u)
    other = (top + rng.integers(1, K, n)) % K
    return u, top, np.where(right, top, other)


def probabilities(model: Model, u: np.ndarray, top: np.ndarray) -> np.ndarray:
    c = model.confidence(u)
    probs = np.repeat(((1 - c) / (K - 1))[:, None], K, axis=1)
    probs[np.arange(len(u)), top] = c
    return probs


MEASURES = ("ece", "rmsce", "classwise_ece", "brier", "nll")


def rows(options: Options) -> list[Row]:
    import torch

    from compressgate.evaluators.base import EvalContext, Subject
    from compressgate.evaluators.calibration import Calibration
    from compressgate.gates.verdicts import judge
    from compressgate.recipes.data import Split, Splits
    from compressgate.recipes.evaluation import CalibrationSpec
    from compressgate.recipes.manifest import BoundGate, RelativeGate

    spec = CalibrationSpec(bins=BINS, resamples=RESAMPLES, confidence=CONFIDENCE)
    well, bad = truth(WELL), truth(BAD)
    change = {m: bad[m] - well[m] for m in MEASURES}
    gates = {
        "bound on calibration.ece_change at the true change": BoundGate(
            name="ece-change", owner="sim", metric="calibration.ece_change",
            max=change["ece"], confidence=CONFIDENCE,
        ),
        "relative (max_increase) on calibration.ece at the true change": RelativeGate(
            name="ece-relative", owner="sim", metric="calibration.ece",
            max_increase=change["ece"], confidence=CONFIDENCE,
        ),
        "bound on calibration.rmsce_change at the true change": BoundGate(
            name="rmsce-change", owner="sim", metric="calibration.rmsce_change",
            max=change["rmsce"], confidence=CONFIDENCE,
        ),
        "bound on calibration.classwise_ece_change at the true change": BoundGate(
            name="cw-change", owner="sim", metric="calibration.classwise_ece_change",
            max=change["classwise_ece"], confidence=CONFIDENCE,
        ),
    }  # fmt: skip

    def subject(name: str, probs: np.ndarray) -> Subject:
        holder = Subject(stage=name, variant=None, size_bytes=0)  # type: ignore[arg-type]
        holder.outputs["test"] = probs
        return holder

    def covers(low: float, high: float, value: float) -> bool:
        return low <= value <= high

    out: list[Row] = []
    for n in SIZES:
        reps = options.reps(600 if n < 2000 else 400)
        rng = np.random.default_rng([options.seed, n, 23])
        hits: Counter[str] = Counter()
        passes = dict.fromkeys(gates, 0)

        for rep in range(reps):
            u, top, labels = draw(rng, n)
            test = Split(torch.zeros(n, 1), torch.from_numpy(labels))
            splits = Splits(
                train=test, calibration=test, test=test,
                class_names=tuple(str(k) for k in range(K)),
            )  # fmt: skip
            pw, pb = probabilities(WELL, u, top), probabilities(BAD, u, top)
            ctx = EvalContext(seed=options.seed * 100_003 + rep, stage="sim", splits=splits)
            evaluator = Calibration()
            forward = evaluator.evaluate(subject("bad", pb), subject("well", pw), splits, spec, ctx)
            back = evaluator.evaluate(subject("well", pw), subject("bad", pb), splits, spec, ctx)
            assert forward.changes is not None and back.changes is not None
            for m in MEASURES:
                for who, result, value in (("bad", forward, bad[m]), ("well", back, well[m])):
                    e = result.measures[m]
                    hits[f"{m} interval ({who} calibrated)"] += covers(e.ci_low, e.ci_high, value)
                for sign, result, what in ((1, forward, "bad - well"), (-1, back, "well - bad")):
                    e = result.changes[m]
                    name = f"{m}_change interval ({what}, paired)"
                    hits[name] += covers(e.ci_low, e.ci_high, sign * change[m])
            metrics = forward.metrics()
            for label, gate in gates.items():
                verdict = judge(gate, metrics, {}, {"calibration": forward})
                passes[label] += verdict.verdict == "pass"
        level = 2 * CONFIDENCE - 1
        for key, count in hits.items():
            out.append(
                Row(FAMILY, key, "coverage", level, count / reps, reps, n,
                    note=_note(key, well, bad, change))
            )  # fmt: skip
        for label, count in passes.items():
            out.append(Row(FAMILY, label, "false pass", 1 - CONFIDENCE, count / reps, reps, n))
    return out


def _note(key: str, well: dict[str, float], bad: dict[str, float], change: dict[str, float]) -> str:
    measure = key.split(" ")[0].removesuffix("_change")
    if "change" in key:
        sign = -1 if "well - bad" in key else 1
        return f"true change {sign * change[measure]:+.4f}"
    who = well if "(well" in key else bad
    return f"true {who[measure]:.4f}"
