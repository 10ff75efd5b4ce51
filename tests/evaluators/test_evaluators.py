"""The array-level evaluators (accuracy, paired, calibration, fairness, classes, fidelity) as the
executor runs them: their points agree with the low-level functions and the independent
references, and every bootstrap replicate computed by one matrix product equals the statistic
recomputed from scratch on the explicitly resampled data."""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import fairlearn.metrics as flm
import numpy as np
import pytest
import torch
from fairlearn.metrics import equalized_odds_difference as fl_equalized_odds
from scipy import stats

from compressgate.evaluators import calibration as cal
from compressgate.evaluators import fairness as fair
from compressgate.evaluators.base import EvalContext, Subject, evaluate_stage, flatten
from compressgate.evaluators.paired import tango_interval
from compressgate.evaluators.stats import holm, percentile_interval
from compressgate.recipes import evaluation as ev
from compressgate.recipes.data import Split, Splits
from compressgate.registry.kernel.errors import StageError

N = 600


def make(classes: int, seed: int = 0, groups: bool = True) -> tuple[Splits, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, N)
    logits = rng.normal(0, 1, (N, classes))
    logits[np.arange(N), labels] += 1.5
    noisy = logits + rng.normal(0, 0.8, (N, classes))
    probs = []
    for z in (logits, noisy):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    split = Split(
        torch.zeros(N, 1),
        torch.from_numpy(labels),
        groups=torch.from_numpy(rng.integers(0, 3, N)) if groups else None,
    )
    splits = Splits(split, split, split, tuple(f"c{k}" for k in range(classes)), ("a", "b", "c"))
    return splits, probs[0], probs[1]


def subject(name: str, probs: np.ndarray) -> Subject:
    holder = Subject(stage=name, variant=None, size_bytes=0)  # type: ignore[arg-type]
    holder.outputs["test"] = probs
    return holder


def run(spec: ev.EvaluatorSpec, classes: int = 4, baseline: bool = True, **kw: object):  # type: ignore[no-untyped-def]
    splits, base, cand = make(classes, **kw)  # type: ignore[arg-type]
    ctx = EvalContext(seed=3, stage="candidate", splits=splits, parent=subject("parent", base))
    results = evaluate_stage(
        [spec],
        subject("candidate", cand),
        subject("baseline", base) if baseline else None,
        splits,
        ctx,
    )
    return results.get(spec.kind), splits, base, cand, ctx


def resample(ctx: EvalContext, resamples: int, row: int) -> np.ndarray:
    """The sample indices of bootstrap resample `row`, from its count matrix."""
    counts = ctx.bootstrap(resamples).counts[row].astype(int)
    return np.repeat(np.arange(len(counts)), counts)


def test_calibration_points_are_the_low_level_functions_and_changes_their_difference() -> None:
    result, splits, base, cand, _ = run(ev.CalibrationSpec(resamples=300))
    y = splits.test.y.numpy()
    for name, function in (
        ("ece", cal.ece),
        ("mce", cal.mce),
        ("rmsce", cal.rmsce),
        ("classwise_ece", cal.classwise_ece),
    ):
        assert result.measures[name].estimate == pytest.approx(function(cand, y, 15), abs=1e-12)
        change = function(cand, y, 15) - function(base, y, 15)
        assert result.changes[name].estimate == pytest.approx(change, abs=1e-12)
    assert result.measures["brier"].estimate == pytest.approx(cal.brier(cand, y), abs=1e-12)
    assert result.baseline_measures["nll"] == pytest.approx(cal.nll(base, y), abs=1e-12)
    for estimate in (*result.measures.values(), *result.changes.values()):
        assert estimate.ci_low <= estimate.estimate <= estimate.ci_high
    assert sum(b.count for b in result.reliability) == N


@pytest.mark.parametrize("row", [0, 7, 299])
def test_calibration_replicates_equal_the_measures_of_the_resampled_data(row: int) -> None:
    spec = ev.CalibrationSpec(resamples=300)
    _, splits, base, cand, ctx = run(spec)
    y = splits.test.y.numpy()
    boot = ctx.bootstrap(spec.resamples)
    columns = [cal._Columns(*cal.check_probs(p, y), spec.bins, seed=1) for p in (cand, base)]
    replicated = [c.statistics(boot.totals(c.matrix)) for c in columns]
    rows = resample(ctx, spec.resamples, row)
    for values, probs in zip(replicated, (cand, base), strict=True):
        # The statistics that are plain functions of the resampled data (the bounded ones are
        # checked in tests/evaluators/test_calibration.py).
        direct = cal.point_measures(probs[rows], y[rows], spec.bins)
        for name in ("brier", "nll", "mce"):
            assert values[name][row] == pytest.approx(direct[name], abs=1e-9), name


def test_calibration_of_the_baseline_itself_has_no_changes() -> None:
    result, *_ = run(ev.CalibrationSpec(resamples=200), baseline=False)
    assert result.changes is None
    assert set(result.metrics()) == {f"calibration.{m}" for m in cal.MEASURES}


def test_fairness_of_a_binary_task_matches_fairlearn_and_the_low_level_functions() -> None:
    result, splits, _, cand, ctx = run(ev.FairnessSpec(resamples=300), classes=2)
    y, g = splits.test.y.numpy(), splits.test.groups.numpy()
    pred = cand.argmax(axis=1)
    assert result.task == "binary"
    assert result.equalized_odds_difference.estimate == pytest.approx(
        fl_equalized_odds(y, pred, sensitive_features=g), abs=1e-12
    )
    assert result.demographic_parity_difference.estimate == pytest.approx(
        fair.demographic_parity_difference(y, pred, g), abs=1e-12
    )
    # The interval is the percentile interval of the statistic recomputed from scratch on
    # each explicit resample (the same resamples the evaluator drew).
    for name, function in (
        ("equal_opportunity_difference", fair.equal_opportunity_difference),
        ("demographic_parity_difference", fair.demographic_parity_difference),
    ):
        direct = []
        for row in range(300):
            rows = resample(ctx, 300, row)
            direct.append(function(y[rows], pred[rows], g[rows]))
        low, high = percentile_interval(np.array(direct), 0.9)  # 2c - 1 at confidence 0.95
        estimate = getattr(result, name)
        point = estimate.estimate
        assert estimate.ci_low == pytest.approx(min(low, point), abs=1e-9)
        assert estimate.ci_high == pytest.approx(max(high, point), abs=1e-9)


def spread_bound_by_hand(
    y: np.ndarray, base: np.ndarray, cand: np.ndarray, g: np.ndarray, within: np.ndarray
) -> float:
    """max over ordered group pairs (i, j) of the MOVER upper limit of δ_i - δ_j, from each
    group's Tango interval at 90% (one-sided 95% ends) of its paired change over `within`."""
    found = []
    for code in np.unique(g):
        mask = (g == code) & within
        if mask.any():
            b = int(np.sum(base[mask] & ~cand[mask]))
            c = int(np.sum(cand[mask] & ~base[mask]))
            low, high = tango_interval(b, c, int(mask.sum()), 0.9)
            found.append(((c - b) / mask.sum(), low, high))
    limits = [
        d_i - d_j + np.sqrt((high - d_i) ** 2 + (d_j - low) ** 2)
        for (d_i, _, high), (d_j, low, _) in permutations(found, 2)
    ]
    return max(limits, default=0.0)


@pytest.mark.parametrize("classes", [2, 4])
def test_fairness_changes_are_bounded_by_the_spread_of_the_groups_paired_changes(
    classes: int,
) -> None:
    result, splits, base, cand, _ = run(ev.FairnessSpec(resamples=300), classes=classes)
    y, g = splits.test.y.numpy(), splits.test.groups.numpy()
    ours, theirs = cand.argmax(axis=1), base.argmax(axis=1)
    labels = [1] if classes == 2 else range(classes)

    def worst(function: Callable[..., float], pred: np.ndarray) -> float:
        # fairlearn's, one-vs-rest for every class of a multiclass task, the worst reported.
        return max(
            function((y == k).astype(int), (pred == k).astype(int), sensitive_features=g)
            for k in labels
        )

    spreads: dict[str, list[float]] = {"selection": [], "tpr": [], "fpr": []}
    for k in labels:
        everyone = np.ones_like(y, dtype=bool)
        for rate, within in (("selection", everyone), ("tpr", y == k), ("fpr", y != k)):
            spreads[rate].append(spread_bound_by_hand(y, theirs == k, ours == k, g, within))
    accuracy = spread_bound_by_hand(y, theirs == y, ours == y, g, np.ones_like(y, dtype=bool))
    expected = {
        "demographic_parity_difference": (
            worst(flm.demographic_parity_difference, ours)
            - worst(flm.demographic_parity_difference, theirs),
            max(spreads["selection"]),
        ),
        "equalized_odds_difference": (
            worst(flm.equalized_odds_difference, ours)
            - worst(flm.equalized_odds_difference, theirs),
            max(spreads["tpr"] + spreads["fpr"]),
        ),
        "equal_opportunity_difference": (
            worst(flm.equal_opportunity_difference, ours)
            - worst(flm.equal_opportunity_difference, theirs),
            max(spreads["tpr"]),
        ),
        "accuracy_gap": (
            np.ptp(list(fair.group_accuracy(y, ours, g).values()))
            - np.ptp(list(fair.group_accuracy(y, theirs, g).values())),
            accuracy,
        ),
    }
    for name, (point, bound) in expected.items():
        change = getattr(result, f"{name}_change")
        assert result.metrics()[f"fairness.{name}_change"] == change
        assert change.estimate == pytest.approx(point, abs=1e-12)
        assert (change.ci_low, change.ci_high) == pytest.approx((-bound, bound), abs=1e-9)
        assert change.confidence == pytest.approx(0.9)
        assert "paired spread bound" in change.method
    # The baseline against itself: no change, and none reported for the baseline itself.
    alone, *_ = run(ev.FairnessSpec(resamples=300), classes=2, baseline=False)
    assert alone.demographic_parity_difference_change is None
    assert "fairness.demographic_parity_difference_change" not in alone.metrics()


def test_fairness_of_a_multiclass_task_reports_the_worst_class_one_vs_rest() -> None:
    result, splits, _, cand, _ = run(ev.FairnessSpec(resamples=200), classes=4)
    y, g = splits.test.y.numpy(), splits.test.groups.numpy()
    pred = cand.argmax(axis=1)
    worst = max(
        fl_equalized_odds((y == k).astype(int), (pred == k).astype(int), sensitive_features=g)
        for k in range(4)
    )
    assert result.task == "multiclass"
    assert result.equalized_odds_difference.estimate == pytest.approx(worst, abs=1e-12)


def test_fairness_worst_group_and_its_drop_read_each_group_s_own_bound_on_the_gated_end() -> None:
    result, splits, base, cand, _ = run(ev.FairnessSpec(resamples=200))
    y, g = splits.test.y.numpy(), splits.test.groups.numpy()
    accuracy = fair.group_accuracy(y, cand.argmax(axis=1), g)
    assert result.worst_group == ("a", "b", "c")[min(accuracy, key=accuracy.get)]
    # Each group's own 90% interval (one-sided 95% ends) and the simultaneous one (Bonferroni
    # over 3 groups): the gated end (lower end of the worst accuracy, upper end of the largest
    # drop) takes the own ones, the other end the simultaneous ones.
    own, each = 0.9, 1 - 0.1 / 3
    accuracies, drops = [], []
    for code in range(3):
        mask = g == code
        base_ok = base[mask].argmax(axis=1) == y[mask]
        cand_ok = cand[mask].argmax(axis=1) == y[mask]
        m, hits = int(mask.sum()), int(cand_ok.sum())
        wilson = [
            stats.binomtest(hits, m).proportion_ci(level, method="wilson") for level in (own, each)
        ]
        accuracies.append((hits / m, wilson[0].low, wilson[1].high))
        b, c = int(np.sum(base_ok & ~cand_ok)), int(np.sum(cand_ok & ~base_ok))
        tango = [tango_interval(b, c, m, level) for level in (own, each)]
        drops.append(((b - c) / m, -tango[1][1], -tango[0][0]))
        row = result.groups[code]
        assert (row.drop.ci_low, row.drop.ci_high) == pytest.approx((-tango[1][1], -tango[1][0]))
        assert (row.accuracy.ci_low, row.accuracy.ci_high) == pytest.approx(
            (wilson[1].low, wilson[1].high)
        )
    lowest = result.worst_group_accuracy
    assert lowest.estimate == pytest.approx(min(accuracy.values()))
    assert lowest.ci_low == pytest.approx(min(a[1] for a in accuracies))
    assert lowest.ci_high == pytest.approx(min(a[2] for a in accuracies))
    worst = result.worst_group_accuracy_drop
    assert worst.estimate == pytest.approx(max(d[0] for d in drops))
    assert worst.ci_low == pytest.approx(max(d[1] for d in drops))
    assert worst.ci_high == pytest.approx(max(d[2] for d in drops))
    for estimate in (lowest, worst):
        assert "bonferroni" in estimate.method and "own one-sided 95.0% bound" in estimate.method
        assert estimate.confidence == pytest.approx(0.9)


def test_fairness_without_groups_is_a_stage_error_naming_the_evaluator() -> None:
    with pytest.raises(StageError, match="evaluator 'fairness' after stage 'candidate'"):
        run(ev.FairnessSpec(resamples=200), groups=False)


def test_classes_tests_each_class_with_holm_and_names_the_most_affected() -> None:
    result, splits, base, cand, _ = run(ev.ClassesSpec(top=2))
    y = splits.test.y.numpy()
    pvalues, drops = [], []
    for label in range(4):
        mask = y == label
        base_ok = base[mask].argmax(axis=1) == label
        cand_ok = cand[mask].argmax(axis=1) == label
        b, c = int(np.sum(base_ok & ~cand_ok)), int(np.sum(cand_ok & ~base_ok))
        pvalues.append(stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0)
        drops.append((b - c) / mask.sum())
    rows = result.classes
    assert [r.pvalue for r in rows] == pytest.approx(pvalues)
    assert [r.adjusted_pvalue for r in rows] == pytest.approx(list(holm(pvalues)))
    assert [r.drop.estimate for r in rows] == pytest.approx(drops)
    order = [f"c{k}" for k in np.argsort(-np.array(drops), kind="stable") if drops[k] > 0]
    assert result.most_affected == order[:2]
    assert result.worst_recall_drop.estimate == pytest.approx(max(drops))


def test_classes_worst_values_read_each_class_s_own_bound_on_the_gated_end() -> None:
    result, splits, base, cand, _ = run(ev.ClassesSpec())
    y = splits.test.y.numpy()
    own, each = 0.9, 1 - 0.1 / 4  # one-sided 95% ends; Bonferroni over 4 classes
    recalls, drops = [], []
    for label in range(4):
        mask = y == label
        base_ok = base[mask].argmax(axis=1) == label
        cand_ok = cand[mask].argmax(axis=1) == label
        m, hits = int(mask.sum()), int(cand_ok.sum())
        wilson = [
            stats.binomtest(hits, m).proportion_ci(level, method="wilson") for level in (own, each)
        ]
        recalls.append((wilson[0].low, wilson[1].high))
        b, c = int(np.sum(base_ok & ~cand_ok)), int(np.sum(cand_ok & ~base_ok))
        tango = [tango_interval(b, c, m, level) for level in (own, each)]
        drops.append((-tango[1][1], -tango[0][0]))
    worst_recall, worst_drop = result.worst_recall, result.worst_recall_drop
    assert worst_recall.ci_low == pytest.approx(min(r[0] for r in recalls))
    assert worst_recall.ci_high == pytest.approx(min(r[1] for r in recalls))
    assert worst_drop.ci_low == pytest.approx(max(d[0] for d in drops))
    assert worst_drop.ci_high == pytest.approx(max(d[1] for d in drops))
    for estimate in (worst_recall, worst_drop):
        assert estimate.ci_low <= estimate.estimate <= estimate.ci_high
        assert "over 4 classes (bonferroni)" in estimate.method


def test_fidelity_against_the_parent_uses_the_parent_and_matches_scipy() -> None:
    result, splits, base, cand, _ = run(ev.FidelitySpec(against="parent", resamples=200))
    assert result.reference == "parent"
    kl = np.mean([stats.entropy(p, q) for p, q in zip(base, cand, strict=True)])
    assert result.kl_divergence.estimate == pytest.approx(kl, rel=1e-9)
    agree = np.sum(base.argmax(axis=1) == cand.argmax(axis=1))
    assert result.agreement.estimate == pytest.approx(agree / N)
    y = splits.test.y.numpy()
    negative = np.sum((base.argmax(axis=1) == y) & (cand.argmax(axis=1) != y))
    assert result.negative_flip_rate.estimate == pytest.approx(negative / N)


def test_paired_difference_is_tango_on_the_discordant_pairs() -> None:
    result, splits, base, cand, _ = run(ev.PairedSpec())
    y = splits.test.y.numpy()
    base_ok, cand_ok = base.argmax(axis=1) == y, cand.argmax(axis=1) == y
    b, c = int(np.sum(base_ok & ~cand_ok)), int(np.sum(cand_ok & ~base_ok))
    assert (result.b, result.c, result.n) == (b, c, N)
    assert (result.difference.ci_low, result.difference.ci_high) == pytest.approx(
        tango_interval(b, c, N, 0.9)
    )
    assert result.mcnemar_pvalue == pytest.approx(stats.binomtest(min(b, c), b + c).pvalue)


def test_comparisons_are_left_out_for_the_baseline_itself() -> None:
    assert run(ev.PairedSpec(), baseline=False)[0] is None
    assert run(ev.FidelitySpec(), baseline=False)[0] is None


def test_a_stage_gives_exactly_the_metrics_its_specs_declare() -> None:
    specs = [
        ev.AccuracySpec(),
        ev.PairedSpec(),
        ev.CalibrationSpec(resamples=200),
        ev.FairnessSpec(resamples=200),
        ev.ClassesSpec(),
        ev.FidelitySpec(resamples=200),
    ]
    splits, base, cand = make(4)
    ctx = EvalContext(seed=0, stage="candidate", splits=splits, parent=subject("p", base))
    results = evaluate_stage(specs, subject("c", cand), subject("b", base), splits, ctx)
    assert list(flatten(results)) == [name for spec in specs for name in spec.metric_names()]
    for estimate in flatten(results).values():
        assert estimate.ci_low <= estimate.estimate <= estimate.ci_high
