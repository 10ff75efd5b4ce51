"""Robustness: the input shifts, and the evaluator on the digits test split.

- `shift_inputs`: gaussian noise has the requested standard deviation (a large sample, within
  its sampling tolerance), is deterministic in the seed and differs across seeds; occlusion
  zeroes one square patch of round(√f·H) × round(√f·W) per image (the same in every channel, at
  positions that vary across images), or a fraction f of the features of a flat input; integer
  inputs and unknown shifts are refused.
- The `Robustness` evaluator with small trained CNNs: a model against itself (every difference
  exactly 0 with an interval around 0, agreement 1, the worst difference's interval sharing
  each row's lower end and wider above), two different models (every row recomputed by hand
  from the shifted inputs, the worst difference as the minimum of Tango intervals: its lower
  end from each shift's own, its upper end Bonferroni over the shifts), the baseline itself
  (comparisons left out), and the metric names the spec declares.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from compressgate.evaluators.base import EvalContext, Subject
from compressgate.evaluators.calibration import ece
from compressgate.evaluators.paired import tango_interval
from compressgate.evaluators.results import RobustnessResult
from compressgate.evaluators.robustness import Robustness, shift_inputs
from compressgate.recipes import training
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.evaluation import RobustnessSpec, ShiftSpec
from compressgate.recipes.examples import digits
from compressgate.recipes.models import TorchModel
from compressgate.registry.kernel.errors import StageError

FACTORY = "compressgate.recipes.examples.digits:build_cnn"
ARGS = {"channels": (4, 8), "hidden": 16}
SPEC = RobustnessSpec(
    shifts=(
        ShiftSpec(kind="gaussian_noise", severities=(0.1, 0.5)),
        ShiftSpec(kind="occlusion", severities=(0.25,)),
    )
)
COMPARISONS = ("accuracy_difference", "agreement", "worst_accuracy_difference")


# --------------------------------------------------------------------------- gaussian noise


def test_gaussian_noise_has_the_requested_standard_deviation_and_zero_mean() -> None:
    x = torch.linspace(-1, 1, 1000 * 64, dtype=torch.float64).reshape(1000, 1, 8, 8)
    noise = shift_inputs(x, "gaussian_noise", 0.3, seed=1) - x
    # 64,000 draws: the sample sd has a standard error of 0.28% of 0.3 and the mean one of
    # 0.0012; the tolerances are about five of them.
    assert float(noise.std()) == pytest.approx(0.3, rel=0.015)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.006)
    assert noise.dtype == torch.float64


def test_gaussian_noise_is_deterministic_in_the_seed_and_differs_across_seeds() -> None:
    x = torch.rand((30, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    before = x.clone()
    first = shift_inputs(x, "gaussian_noise", 0.2, seed=11)
    assert torch.equal(first, shift_inputs(x, "gaussian_noise", 0.2, seed=11))
    assert not torch.equal(first, shift_inputs(x, "gaussian_noise", 0.2, seed=12))
    assert torch.equal(x, before)  # the input is left alone
    assert first.dtype == x.dtype
    assert first.shape == x.shape


def test_the_noise_scales_with_the_severity_for_a_fixed_seed() -> None:
    x = torch.zeros((10, 1, 8, 8))
    small = shift_inputs(x, "gaussian_noise", 0.1, seed=3)
    large = shift_inputs(x, "gaussian_noise", 0.4, seed=3)
    torch.testing.assert_close(large, 4 * small, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- occlusion


def zero_boxes(shifted: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Per image (summed over channels): the zeros' bounding box (top, left, height, width)."""
    boxes = []
    for image in (shifted == 0).reshape(-1, *shifted.shape[-2:]):
        rows = torch.nonzero(image.any(dim=1)).flatten()
        cols = torch.nonzero(image.any(dim=0)).flatten()
        top, left = int(rows.min()), int(cols.min())
        height, width = int(rows.max()) - top + 1, int(cols.max()) - left + 1
        # The zeros fill their bounding box: one rectangle, not scattered pixels.
        assert int(image.sum()) == height * width
        boxes.append((top, left, height, width))
    return boxes


@pytest.mark.parametrize(
    ("shape", "fraction", "side"),
    [
        ((50, 1, 8, 8), 0.25, (4, 4)),  # √0.25 · 8 = 4
        ((50, 1, 8, 8), 0.1, (3, 3)),  # √0.1 · 8 = 2.53 -> 3
        ((50, 6, 10), 0.36, (4, 6)),  # no channel axis; √0.36 · (6, 10) = (3.6, 6)
        ((50, 1, 8, 8), 0.001, (1, 1)),  # at least one pixel
    ],
)
def test_occlusion_zeroes_one_square_patch_of_the_fraction_per_image(
    shape: tuple[int, ...], fraction: float, side: tuple[int, int]
) -> None:
    ones = torch.ones(shape)
    shifted = shift_inputs(ones, "occlusion", fraction, seed=5)
    zeros_per_image = (shifted == 0).reshape(shape[0], -1).sum(dim=1)
    assert zeros_per_image.tolist() == [side[0] * side[1]] * shape[0]
    assert side == (
        max(1, round(math.sqrt(fraction) * shape[-2])),
        max(1, round(math.sqrt(fraction) * shape[-1])),
    )
    boxes = zero_boxes(shifted)
    assert {(h, w) for _, _, h, w in boxes} == {side}
    # A random position per image: 50 images do not all share one.
    assert len({(top, left) for top, left, _, _ in boxes}) > 1
    assert torch.all((shifted == 0) | (shifted == 1))


def test_occlusion_covers_the_same_patch_in_every_channel() -> None:
    ones = torch.ones((20, 3, 8, 8))
    shifted = shift_inputs(ones, "occlusion", 0.25, seed=2)
    assert (shifted == 0).reshape(20, -1).sum(dim=1).tolist() == [3 * 16] * 20
    for channel in (1, 2):
        assert torch.equal(shifted[:, channel], shifted[:, 0])


@pytest.mark.parametrize(("fraction", "zeros"), [(0.25, 10), (0.1, 4), (0.01, 1)])
def test_occlusion_of_a_flat_input_zeroes_that_fraction_of_its_features(
    fraction: float, zeros: int
) -> None:
    ones = torch.ones((40, 40))
    shifted = shift_inputs(ones, "occlusion", fraction, seed=9)
    assert (shifted == 0).sum(dim=1).tolist() == [zeros] * 40
    # Different features per row.
    assert len({tuple(torch.nonzero(row == 0).flatten().tolist()) for row in shifted}) > 1


def test_occlusion_is_deterministic_in_the_seed() -> None:
    ones = torch.ones((30, 1, 8, 8))
    first = shift_inputs(ones, "occlusion", 0.25, seed=4)
    assert torch.equal(first, shift_inputs(ones, "occlusion", 0.25, seed=4))
    assert not torch.equal(first, shift_inputs(ones, "occlusion", 0.25, seed=5))


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_shifts_refuse_non_floating_inputs(dtype: torch.dtype) -> None:
    x = torch.ones((4, 1, 8, 8), dtype=dtype)
    for kind in ("gaussian_noise", "occlusion"):
        with pytest.raises(ValueError, match="floating-point"):
            shift_inputs(x, kind, 0.25, seed=0)


def test_an_unknown_shift_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shift 'blur'"):
        shift_inputs(torch.ones((2, 4)), "blur", 0.5, seed=0)


# --------------------------------------------------------------------------- the evaluator


class Models:
    def __init__(self, splits: Splits, good: nn.Module, weak: nn.Module) -> None:
        self.splits, self.good, self.weak = splits, good, weak


@pytest.fixture(scope="module")
def models() -> Models:
    """The digits splits, a CNN trained well (~93%) and one trained briefly (~50%)."""
    splits = digits.load(0)
    trained = []
    for seed, epochs in ((0, 6), (1, 2)):
        torch.manual_seed(seed)
        module = digits.build_cnn(**ARGS)
        training.fit(module, splits.train, epochs=epochs, lr=2e-2, batch_size=64, seed=seed)
        trained.append(module.eval())
    return Models(splits, *trained)


def subject(stage: str, module: nn.Module) -> Subject:
    return Subject(stage=stage, variant=TorchModel(module, FACTORY, dict(ARGS)), size_bytes=1)


def evaluate(
    candidate: Subject, baseline: Subject | None, splits: Splits, seed: int = 0
) -> RobustnessResult:
    ctx = EvalContext(seed=seed, stage=candidate.stage, splits=splits)
    return Robustness().evaluate(candidate, baseline, splits, SPEC, ctx)


def width(low: float, high: float) -> float:
    return high - low


def test_a_model_against_itself_differs_by_exactly_zero_under_every_shift(
    models: Models,
) -> None:
    result = evaluate(
        subject("export", models.good), subject("baseline", models.good), models.splits
    )
    assert [(r.kind, r.level, r.severity) for r in result.shifts] == [
        ("gaussian_noise", 1, 0.1),
        ("gaussian_noise", 2, 0.5),
        ("occlusion", 1, 0.25),
    ]
    for row in result.shifts:
        assert row.accuracy_difference is not None
        assert row.accuracy_difference.estimate == 0.0
        assert row.accuracy_difference.ci_low < 0 < row.accuracy_difference.ci_high
        assert row.agreement is not None
        assert row.agreement.estimate == 1.0
        assert row.baseline_accuracy == pytest.approx(row.accuracy.estimate, abs=1e-15)
    worst = result.worst_accuracy_difference
    assert worst is not None
    assert worst.estimate == 0.0
    assert worst.ci_low < 0 < worst.ci_high
    # No disagreement anywhere: every row's interval is the same. The lower end is theirs (each
    # shift's own bound suffices); the upper end is simultaneous over three shifts (each at
    # 1 - 0.1/3), so higher.
    for row in result.shifts:
        assert row.accuracy_difference is not None
        difference = row.accuracy_difference
        assert width(worst.ci_low, worst.ci_high) > width(difference.ci_low, difference.ci_high)
        assert worst.ci_low == pytest.approx(difference.ci_low, abs=1e-12)
        assert worst.ci_high > difference.ci_high


def test_every_row_recomputed_by_hand_from_the_shifted_inputs(models: Models) -> None:
    splits = models.splits
    ctx = EvalContext(seed=0, stage="prune", splits=splits)
    result = evaluate(subject("prune", models.weak), subject("baseline", models.good), splits)
    y = splits.test.y.numpy()
    n = len(y)
    rows = iter(result.shifts)
    counts = []
    for shift in SPEC.shifts:
        for severity in shift.severities:
            row = next(rows)
            x = shift_inputs(
                splits.test.x, shift.kind, severity, ctx.seed_for(f"{shift.kind}:{severity!r}")
            )
            with torch.no_grad():
                cand_logits = models.weak(x).double()
                base_logits = models.good(x).double()
            cand = cand_logits.argmax(dim=1).numpy()
            base = base_logits.argmax(dim=1).numpy()
            assert row.accuracy.estimate == pytest.approx(np.mean(cand == y), abs=1e-12)
            assert row.accuracy.n == n
            assert row.baseline_accuracy == pytest.approx(np.mean(base == y), abs=1e-12)
            assert row.agreement is not None
            assert row.agreement.estimate == pytest.approx(np.mean(cand == base), abs=1e-12)
            b = int(np.sum((base == y) & (cand != y)))
            c = int(np.sum((base != y) & (cand == y)))
            counts.append((b, c))
            assert row.accuracy_difference is not None
            assert row.accuracy_difference.estimate == pytest.approx((c - b) / n, abs=1e-12)
            low, high = tango_interval(b, c, n, 0.9)  # 2c - 1 at confidence 0.95
            assert row.accuracy_difference.ci_low == pytest.approx(low, abs=1e-9)
            assert row.accuracy_difference.ci_high == pytest.approx(high, abs=1e-9)
            probs = torch.softmax(cand_logits, dim=1).numpy()
            assert row.ece.estimate == pytest.approx(ece(probs, y, SPEC.bins), abs=1e-9)
            assert row.ece.ci_low <= row.ece.estimate <= row.ece.ci_high
    # A weak candidate against a good baseline: clearly worse under every shift.
    assert all(b > c for b, c in counts)

    worst = result.worst_accuracy_difference
    assert worst is not None
    assert worst.estimate == pytest.approx(min((c - b) / n for b, c in counts), abs=1e-12)
    # The lower end (what a `min` bound reads): the lowest of the shifts' own one-sided 95%
    # bounds, no Bonferroni; the upper end: simultaneous over the 3 shifts (Bonferroni).
    own = [tango_interval(b, c, n, 0.9) for b, c in counts]
    simultaneous = [tango_interval(b, c, n, 1 - 0.1 / 3) for b, c in counts]
    assert worst.ci_low == pytest.approx(min(lo for lo, _ in own), abs=1e-9)
    assert worst.ci_high == pytest.approx(min(hi for _, hi in simultaneous), abs=1e-9)
    assert worst.confidence == pytest.approx(0.9)
    assert "bonferroni" in worst.method and "own one-sided 95.0% bound" in worst.method
    # The lower end is the rows' own; the upper end is widened, not narrowed.
    differences = [r.accuracy_difference for r in result.shifts]
    assert worst.ci_low == pytest.approx(min(d.ci_low for d in differences if d is not None))
    assert worst.ci_high > min(d.ci_high for d in differences if d is not None)


def test_the_metric_names_are_those_the_spec_declares(models: Models) -> None:
    result = evaluate(
        subject("prune", models.weak), subject("baseline", models.good), models.splits
    )
    assert list(result.metrics()) == list(SPEC.metric_names())


def test_the_baseline_itself_gets_no_comparisons(models: Models) -> None:
    result = evaluate(subject("baseline", models.good), None, models.splits)
    for row in result.shifts:
        assert row.baseline_accuracy is None
        assert row.accuracy_difference is None
        assert row.agreement is None
        assert 0 <= row.accuracy.estimate <= 1
    assert result.worst_accuracy_difference is None
    expected = [m for m in SPEC.metric_names() if not m.endswith(COMPARISONS)]
    assert list(result.metrics()) == expected


def test_every_stage_of_a_seed_sees_the_same_shifted_inputs(models: Models) -> None:
    first = subject("baseline", models.good)
    again = subject("prune", models.good)
    evaluate(first, None, models.splits, seed=3)
    evaluate(again, None, models.splits, seed=3)
    other_seed = subject("prune", models.good)
    evaluate(other_seed, None, models.splits, seed=4)
    assert set(first.outputs) == {"gaussian_noise:0.1", "gaussian_noise:0.5", "occlusion:0.25"}
    for key, probs in first.outputs.items():
        np.testing.assert_array_equal(again.outputs[key], probs)
        assert not np.array_equal(other_seed.outputs[key], probs)


def test_integer_test_inputs_are_a_stage_error_naming_the_evaluator(models: Models) -> None:
    test = Split(torch.ones((6, 1, 8, 8), dtype=torch.int64), torch.zeros(6, dtype=torch.int64))
    splits = Splits(test, test, test, tuple(str(k) for k in range(10)))
    with pytest.raises(StageError, match="evaluator 'robustness' after stage 'prune'") as raised:
        evaluate(subject("prune", models.weak), None, splits)
    assert raised.value.stage == "prune"
