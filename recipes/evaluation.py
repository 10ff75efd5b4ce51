"""Evaluator specs: what a recipe asks to be measured after every stage, tagged by `kind`.

Data only, like every spec. Each spec also names the metrics it produces (`metric_names`), so
that a gate on a metric no declared evaluator produces is caught when the recipe is validated,
not when the gate is judged. Metric names are dotted: `accuracy`, `paired.accuracy_difference`,
`calibration.ece`, `latency.speedup_p50`, … The implementations live in `evaluators/`.

    evaluators:
      - {kind: accuracy}
      - {kind: paired}
      - {kind: calibration, bins: 15}
      - {kind: fairness}
      - {kind: classes, top: 3}
      - {kind: fidelity, against: baseline}
      - {kind: robustness, shifts: [{kind: gaussian_noise, severities: [0.1, 0.3]}]}
      - {kind: latency, batch_sizes: [1, 32]}
      - {kind: size}
      - {kind: exemplars}
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Discriminator, Field, JsonValue, Tag, model_validator
from pydantic.json_schema import SkipJsonSchema

from compressgate.recipes.spec import (
    BUILTIN,
    PLUGIN,
    PluginEntrySchema,
    Spec,
    plugin_or_builtin,
)
from compressgate.registry.kernel.plugins import PLUGIN_NAME

Confidence = Annotated[float, Field(gt=0.5, lt=1)]
Resamples = Annotated[int, Field(ge=200, le=100_000, description="bootstrap resamples")]


class EvaluatorSpec(Spec):
    """Base of every evaluator spec."""

    kind: str

    confidence: Confidence = Field(
        default=0.95,
        description="one-sided confidence of each end of every interval this evaluator reports "
        "(the interval is two-sided at 2 × confidence - 1): a gate on its metrics errs on its "
        "side at most 1 - confidence of the time",
    )

    @property
    def interval_level(self) -> float:
        """The two-sided level of the intervals reported (2c - 1): each end is a one-sided bound
        at `confidence`, which is what a gate judges (`docs/statistics.md`, "Confidence")."""
        return round(2 * self.confidence - 1, 12)

    def metric_names(self) -> tuple[str, ...]:
        """The metrics this evaluator gives a compressed stage (comparisons included)."""
        raise NotImplementedError

    def provides(self, metric: str) -> bool:
        """Whether `metric` is one this evaluator gives (a gate may judge it)."""
        return metric in self.metric_names()

    def onnx_only(self) -> tuple[str, ...]:
        """Those of `metric_names` measured only on ONNX variants (not after torch stages)."""
        return ()

    def describe(self) -> str:
        raise NotImplementedError


class AccuracySpec(EvaluatorSpec):
    """Top-1 accuracy on the test split, with a Wilson interval. Always run."""

    kind: Literal["accuracy"] = "accuracy"

    def metric_names(self) -> tuple[str, ...]:
        return ("accuracy",)

    def describe(self) -> str:
        return f"top-1 accuracy with a {self.interval_level:.0%} Wilson interval"


class PairedSpec(EvaluatorSpec):
    """Candidate against baseline on the same samples: McNemar exact, Tango interval."""

    kind: Literal["paired"] = "paired"

    def metric_names(self) -> tuple[str, ...]:
        return ("paired.accuracy_difference",)

    def describe(self) -> str:
        return (
            "accuracy difference from the baseline on the same samples: McNemar's exact test "
            f"and a {self.interval_level:.0%} Tango score interval"
        )


class CalibrationSpec(EvaluatorSpec):
    """ECE, MCE, RMSCE, class-wise ECE, Brier and NLL, and their change from the baseline."""

    kind: Literal["calibration"] = "calibration"
    bins: int = Field(default=15, ge=2, le=100, description="equal-width bins, closed on the right")
    resamples: Resamples = 2000

    _MEASURES = ("ece", "mce", "rmsce", "classwise_ece", "brier", "nll")

    def metric_names(self) -> tuple[str, ...]:
        names = [f"calibration.{m}" for m in self._MEASURES]
        names += [f"calibration.{m}_change" for m in self._MEASURES]
        return tuple(names)

    def describe(self) -> str:
        return (
            f"calibration (ECE over {self.bins} bins, MCE, RMSCE, class-wise ECE, Brier, NLL) and "
            f"its change from the baseline, {self.resamples} paired bootstrap resamples; binned "
            "measures' intervals bound the population value from each side, MCE's is a range only"
        )


class FairnessSpec(EvaluatorSpec):
    """Per-group accuracy, gaps, worst group and its drop; groups come from the data loader."""

    kind: Literal["fairness"] = "fairness"
    resamples: Resamples = 2000

    def metric_names(self) -> tuple[str, ...]:
        return tuple(
            f"fairness.{m}"
            for m in (
                "worst_group_accuracy",
                "worst_group_accuracy_drop",
                "accuracy_gap",
                "demographic_parity_difference",
                "equalized_odds_difference",
                "equal_opportunity_difference",
                "accuracy_gap_change",
                "demographic_parity_difference_change",
                "equalized_odds_difference_change",
                "equal_opportunity_difference_change",
            )
        )

    def describe(self) -> str:
        return (
            "per-group accuracy, the worst group and its drop from the baseline (the gated end "
            "each group's own bound), accuracy gap and fairlearn's parity differences, and their "
            "change from the baseline (bounded by the spread of the groups' paired changes)"
        )


class ClassesSpec(EvaluatorSpec):
    """Per-class recall change, a McNemar test per class (Holm), the most-affected classes."""

    kind: Literal["classes"] = "classes"
    top: int = Field(default=3, ge=1, le=1000, description="how many most-affected classes to name")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="family-wise level (Holm)")

    def metric_names(self) -> tuple[str, ...]:
        return ("classes.worst_recall", "classes.worst_recall_drop")

    def describe(self) -> str:
        return (
            f"recall of every class and its change from the baseline, McNemar per class with "
            f"Holm's correction at {self.alpha:g}, the {self.top} most affected classes"
        )


class FidelitySpec(EvaluatorSpec):
    """Agreement, KL divergence and flip rates against the baseline or the stage's input."""

    kind: Literal["fidelity"] = "fidelity"
    against: Literal["baseline", "parent"] = Field(
        default="baseline",
        description="baseline, or parent: the model the stage started from (the teacher of a "
        "distill stage)",
    )
    resamples: Resamples = 2000

    def metric_names(self) -> tuple[str, ...]:
        return tuple(
            f"fidelity.{m}"
            for m in ("agreement", "kl_divergence", "negative_flip_rate", "positive_flip_rate")
        )

    def describe(self) -> str:
        return (
            f"top-1 agreement, KL(reference ‖ candidate) and flip rates against the {self.against}"
        )


class ShiftSpec(Spec):
    """A distribution shift applied to the test inputs, at several severities."""

    kind: Literal["gaussian_noise", "occlusion"]
    severities: tuple[Annotated[float, Field(gt=0)], ...] = Field(
        min_length=1,
        description="gaussian_noise: the noise's standard deviation in input units; occlusion: "
        "the fraction of the input zeroed (a square patch for images), below 1",
    )

    @model_validator(mode="after")
    def _fractions(self) -> ShiftSpec:
        if self.kind == "occlusion" and any(s >= 1 for s in self.severities):
            raise ValueError("occlusion severities are fractions of the input: each must be < 1")
        if len(set(self.severities)) != len(self.severities):
            raise ValueError("severities must differ from one another")
        return self


class RobustnessSpec(EvaluatorSpec):
    """The accuracy, paired difference, ECE and agreement again on shifted test inputs."""

    kind: Literal["robustness"] = "robustness"
    shifts: tuple[ShiftSpec, ...] = Field(min_length=1)
    bins: int = Field(default=15, ge=2, le=100)

    def metric_names(self) -> tuple[str, ...]:
        names = []
        for shift in self.shifts:
            for level in range(1, len(shift.severities) + 1):
                prefix = f"robustness.{shift.kind}.s{level}"
                names += [
                    f"{prefix}.accuracy",
                    f"{prefix}.accuracy_difference",
                    f"{prefix}.ece",
                    f"{prefix}.agreement",
                ]
        names.append("robustness.worst_accuracy_difference")
        return tuple(names)

    def describe(self) -> str:
        shifts = "; ".join(
            f"{s.kind} at {', '.join(f'{v:g}' for v in s.severities)}" for s in self.shifts
        )
        return f"accuracy, paired difference, ECE and agreement under shifted inputs ({shifts})"


# The percentiles latency reports, and the calls one session needs to estimate each: at least one
# call above the percentile on average (1 / (1 - q)), so that a session's estimate is not its
# slowest call.
LATENCY_QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
SESSION_CALLS: dict[str, int] = {"p50": 2, "p90": 10, "p95": 20, "p99": 100}


def order_statistic_calls(q: float, confidence: float, *, upper: bool = True) -> int:
    """The fewest independent calls whose order statistics bound the `q` quantile from above
    (or below) at one-sided `confidence`.

    `compressgate.evaluators.stats.quantile_ci` at two-sided 2c - 1 takes the upper end at the
    rank u where binomial(n, q) reaches c; it reaches c within the sample unless u would lie past
    the last call, that is unless the sample maximum is already short: P(max >= x_q) = 1 - q^n
    < c. So n calls suffice exactly when 1 - q^n >= c (1 - (1 - q)^n >= c for the lower end,
    the minimum), the same rule, in closed form: validation may not import the evaluators.
    """
    p = q if upper else 1 - q
    n = max(1, math.ceil(math.log1p(-confidence) / math.log(p)))
    while 1 - p**n < confidence:  # floating-point rounding of the logarithms
        n += 1
    while n > 1 and 1 - p ** (n - 1) >= confidence:
        n -= 1
    return n


class LatencySpec(EvaluatorSpec):
    """Wall-clock latency against the baseline: interleaved, warmed up, threads pinned."""

    kind: Literal["latency"] = "latency"
    runner: Literal["auto", "onnxruntime", "torch"] = Field(
        default="auto",
        description="auto: each variant in its own runtime, the baseline in the candidate's; "
        "onnxruntime: torch variants are exported to float ONNX first; torch: torch variants only",
    )
    batch_sizes: tuple[Annotated[int, Field(ge=1, le=65_536)], ...] = Field(
        default=(1, 32), min_length=1, description="the first is the primary batch size"
    )
    warmup: int = Field(default=20, ge=0, le=100_000)
    repeats: int = Field(default=200, ge=20, le=1_000_000)
    batch_repeats: dict[int, Annotated[int, Field(ge=20, le=1_000_000)]] = Field(
        default_factory=dict,
        description="timed calls at particular batch sizes, e.g. {32: 20} where one call is "
        "slow; the other batch sizes take 'repeats'",
    )
    threads: int = Field(default=1, ge=1, le=256, description="intra-op threads, pinned")
    sessions: int = Field(
        default=5,
        ge=2,
        le=1000,
        description="the warm-up and timed calls of each batch size are split into this many "
        "sessions, each with its calls bound afresh, taken in turn across the batch sizes: the "
        "intervals of speedups and ratios are over the sessions' estimates, so that drift and "
        "correlation between calls widen them instead of passing unseen",
    )

    _QUANTILES = tuple(LATENCY_QUANTILES)

    @model_validator(mode="after")
    def _distinct(self) -> LatencySpec:
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ValueError("batch_sizes must differ from one another")
        unknown = sorted(set(self.batch_repeats) - set(self.batch_sizes))
        if unknown:
            raise ValueError(
                f"batch_repeats names batch size(s) {unknown} that batch_sizes does not list"
            )
        fewest = min(self.repeats_at(size) for size in self.batch_sizes)
        if fewest < 2 * self.sessions:
            raise ValueError(
                f"{self.sessions} sessions need at least {2 * self.sessions} timed calls at every "
                f"batch size (two a session), and one takes {fewest}: use fewer sessions"
            )
        return self

    def repeats_at(self, size: int) -> int:
        """The timed calls of each model at batch size `size`."""
        return self.batch_repeats.get(size, self.repeats)

    def session_calls(self, size: int) -> int:
        """The timed calls of each model in the shortest session at batch size `size`."""
        return self.repeats_at(size) // self.sessions

    def metric_names(self) -> tuple[str, ...]:
        per_batch = [f"{q}_ms" for q in self._QUANTILES] + ["speedup_p50", "throughput"]
        per_batch += [f"{q}_ratio" for q in self._QUANTILES]
        names = [f"latency.{m}" for m in per_batch]
        for size in self.batch_sizes:
            names += [f"latency.batch_{size}.{m}" for m in per_batch]
        return tuple(names)

    def describe(self) -> str:
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        calls = ", ".join(str(self.repeats_at(b)) for b in self.batch_sizes)
        calls += " timed calls" if self.batch_repeats else ""
        calls = calls if self.batch_repeats else f"{self.repeats} timed calls"
        return (
            f"latency at batch sizes {sizes} ({self.runner} runner, {self.threads} thread(s), "
            f"{self.warmup} warm-up and {calls} interleaved with the baseline, in "
            f"{self.sessions} sessions): p50/p90/p95/p99 with order-statistic intervals, "
            "speedup and candidate/baseline percentile ratios with intervals over the sessions, "
            "throughput"
        )


class SizeSpec(EvaluatorSpec):
    """Bytes on disk, parameters, non-zero parameters, MACs, peak memory of a session."""

    kind: Literal["size"] = "size"
    memory: bool = Field(
        default=True, description="measure the peak memory of an onnxruntime session (ONNX only)"
    )

    def metric_names(self) -> tuple[str, ...]:
        names = ["bytes", "ratio", "times_smaller", "params", "nonzero_params", "macs"]
        if self.memory:
            names += ["peak_memory_bytes", "peak_memory_ratio"]
        return tuple(f"size.{m}" for m in names)

    def onnx_only(self) -> tuple[str, ...]:
        return ("size.peak_memory_bytes", "size.peak_memory_ratio") if self.memory else ()

    def describe(self) -> str:
        memory = ", peak memory of an onnxruntime session" if self.memory else ""
        return f"bytes on disk and their ratio to the float baseline, parameters, MACs{memory}"


class CosineSpec(EvaluatorSpec):
    """Embedding models: cosine similarity of each test sample's embedding to the baseline's."""

    kind: Literal["cosine"] = "cosine"
    resamples: Resamples = 2000

    def metric_names(self) -> tuple[str, ...]:
        return ("cosine.mean", "cosine.p1", "cosine.min")

    def describe(self) -> str:
        return (
            "cosine similarity of every test embedding to the baseline's: mean, 1st percentile "
            f"and minimum, with {self.resamples}-resample bootstrap intervals"
        )


class RetrievalSpec(EvaluatorSpec):
    """Embedding models: do the test samples keep their nearest neighbours (as retrieval)?"""

    kind: Literal["retrieval"] = "retrieval"
    k: int = Field(default=10, ge=1, le=100, description="neighbours compared per sample")
    resamples: Resamples = 2000

    def metric_names(self) -> tuple[str, ...]:
        return ("retrieval.top1_agreement", "retrieval.overlap_at_k")

    def describe(self) -> str:
        return (
            "nearest-neighbour retrieval among the test samples against the baseline's: top-1 "
            f"neighbour agreement (Wilson interval) and overlap of the {self.k} nearest "
            "(bootstrap interval)"
        )


class ExemplarsSpec(EvaluatorSpec):
    """Compression-identified exemplars (Hooker et al. 2019), across the recipe's seeds."""

    kind: Literal["exemplars"] = "exemplars"

    def metric_names(self) -> tuple[str, ...]:
        return ("exemplars.fraction",)

    def describe(self) -> str:
        return (
            "compression-identified exemplars: test samples whose modal label over the seeds' "
            "compressed models differs from the modal label over the seeds' baselines"
        )


AnyEvaluatorSpec = (
    AccuracySpec
    | PairedSpec
    | CalibrationSpec
    | FairnessSpec
    | ClassesSpec
    | FidelitySpec
    | RobustnessSpec
    | LatencySpec
    | SizeSpec
    | ExemplarsSpec
    | CosineSpec
    | RetrievalSpec
)
EvaluatorSpecs = Annotated[AnyEvaluatorSpec, Field(discriminator="kind")]


def plugin_name(value: str, family: str, builtins: tuple[str, ...]) -> str:
    """`value` as the name of a plug-in of `family`: never a built-in kind's."""
    if value in builtins:
        raise ValueError(f"'{value}' is a built-in {family} kind: write 'kind: {value}'")
    if len(value) > 64 or not PLUGIN_NAME.match(value):
        raise ValueError(
            f"'{value}' is not a plug-in name: lowercase letters and digits, words joined by "
            "'-' (e.g. toy-round), at most 64 characters"
        )
    return value


def _evaluator_plugin_name(value: str) -> str:
    return plugin_name(value, "evaluator", EVALUATOR_KINDS)


class PluginEvaluatorSpec(EvaluatorSpec):
    """A third-party evaluator: an entry point of group `compressgate.evaluators`, which runs
    only if the trust policy's `plugins` allows its distribution. Its metrics are named under
    its own prefix (`toy-weights` gives `toy_weights.*`), so a plug-in never reports a
    built-in metric; `params` is the plug-in's to define, validated by its own model."""

    is_plugin: ClassVar[bool] = True
    kind: Annotated[str, AfterValidator(_evaluator_plugin_name)] = Field(
        alias="plugin",
        description="the plug-in's entry point name in the group compressgate.evaluators",
        json_schema_extra={"pattern": PLUGIN_NAME.pattern},
    )
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="the plug-in's options, checked by the plug-in"
    )
    # Not the plug-in's to take: its estimates carry their own intervals (refused below).
    confidence: SkipJsonSchema[Confidence] = Field(default=0.95, exclude=True)

    @model_validator(mode="after")
    def _own_options(self) -> PluginEvaluatorSpec:
        if "confidence" in self.model_fields_set:
            raise ValueError(
                "a plug-in evaluator reports its own intervals: its options go under 'params'"
            )
        return self

    @property
    def metric_prefix(self) -> str:
        """The dotted prefix of every metric this plug-in gives: `toy_weights.`"""
        return self.kind.replace("-", "_") + "."

    def metric_names(self) -> tuple[str, ...]:
        return ()  # the plug-in's own, known once it runs: any name under `metric_prefix`

    def provides(self, metric: str) -> bool:
        return metric.startswith(self.metric_prefix)

    def describe(self) -> str:
        given = f" with {', '.join(f'{k}={v!r}' for k, v in self.params.items())}"
        return (
            f"plug-in evaluator '{self.kind}'{given if self.params else ''}, reporting "
            f"{self.metric_prefix}* metrics"
        )


# An evaluator entry: a built-in kind (the tagged union above), or a plug-in (`plugin:`).
EvaluatorEntry = Annotated[
    Annotated[EvaluatorSpecs, Tag(BUILTIN)] | Annotated[PluginEvaluatorSpec, Tag(PLUGIN)],
    Discriminator(plugin_or_builtin),
    PluginEntrySchema(),
]
EVALUATOR_KINDS: tuple[str, ...] = (
    "accuracy",
    "paired",
    "calibration",
    "fairness",
    "classes",
    "fidelity",
    "robustness",
    "latency",
    "size",
    "exemplars",
    "cosine",
    "retrieval",
)
# What each task may measure: classifiers have labels to be right about; embedding models have
# only the baseline's embeddings to stay close to. Latency and size measure either.
CLASSIFICATION_ONLY: tuple[str, ...] = (
    "accuracy",
    "paired",
    "calibration",
    "fairness",
    "classes",
    "fidelity",
    "robustness",
    "exemplars",
)
EMBEDDING_ONLY: tuple[str, ...] = ("cosine", "retrieval")
# Evaluated across seeds once every seed has run, not after each stage.
ACROSS_SEEDS: tuple[str, ...] = ("exemplars",)

# --- how a metric is compared with the baseline --------------------------------------------------


class Comparison(Spec):
    """How a `relative` or `non_inferior` gate compares one metric with the baseline.

    A change judged against the baseline's point estimate would hold the candidate's sampling
    error and ignore the baseline's: such gates pass a candidate at the threshold more often
    than their confidence says. So each is judged on a paired interval measured on the same
    samples (or the same interleaved calls): `difference` names the metric holding candidate -
    baseline, `ratio` the one holding candidate / baseline. `exact` metrics (bytes, parameter
    counts) have no sampling error and are compared directly. A metric with none of these
    cannot be judged by those rules: `why` says what to gate instead.
    """

    difference: str | None = None
    ratio: str | None = None
    exact: bool = False
    why: str = ""


_ALREADY = "is already measured against the baseline (on the same samples): gate it with 'bound'"
_GAPS = (
    "accuracy_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
)
_CALIBRATION = ("ece", "mce", "rmsce", "classwise_ece", "brier", "nll")


def comparison(metric: str) -> Comparison:
    """How `metric` is compared with the baseline by `relative` and `non_inferior` gates."""
    parts = metric.split(".")
    if metric == "accuracy":
        return Comparison(difference="paired.accuracy_difference")
    if parts[0] == "size":
        return Comparison(exact=True)
    if parts[0] == "calibration" and len(parts) == 2 and parts[1] in _CALIBRATION:
        refused = ungateable(metric)
        if refused is not None:
            return Comparison(why=refused)
        return Comparison(difference=f"{metric}_change")
    if parts[0] == "fairness" and len(parts) == 2 and parts[1] in _GAPS:
        return Comparison(difference=f"{metric}_change")
    if parts[0] == "robustness" and parts[-1] == "accuracy" and len(parts) == 4:
        return Comparison(difference=f"{metric}_difference")
    last = parts[-1]
    if (
        parts[0] in ("paired", "fidelity", "cosine", "retrieval")
        or last.endswith(("_change", "_difference", "_drop", "agreement"))
        or last.startswith("speedup")
    ):
        return Comparison(why=f"'{metric}' {_ALREADY}")
    if metric in ("fairness.worst_group_accuracy", "classes.worst_recall"):
        return Comparison(
            why=f"no paired interval of the change in '{metric}' is measured: gate "
            f"'{metric}_drop' with 'bound' (the largest drop of any one, paired)"
        )
    if parts[0] == "latency":
        if last.endswith("_ratio"):
            return Comparison(why=f"'{metric}' {_ALREADY}")
        if last.endswith("_ms") and last[: -len("_ms")] in LATENCY_QUANTILES:
            # The candidate / baseline ratio of the percentile from the same interleaved calls.
            # No difference in milliseconds is measured: timing noise scales with the level, so
            # the ratio is what is stable across sessions; gate the ratio (`relative: true`).
            return Comparison(ratio=f"{metric[: -len('_ms')]}_ratio")
        return Comparison(
            why=f"no paired interval of the change in '{metric}' is measured: gate "
            "'latency.speedup_p50' (a paired ratio of medians) with 'bound'"
        )
    return Comparison(
        why=f"no paired interval of the change in '{metric}' from the baseline is measured: "
        "gate it with 'bound'"
    )


_NO_INTERVAL = ("calibration.mce", "calibration.mce_change")


def ungateable(metric: str) -> str | None:
    """Why no gate may judge `metric` (its reported interval is not a confidence interval), or
    None. MCE is a maximum over bins, some nearly empty: neither its plug-in nor its bootstrap
    range bounds the population value at any known level (`evaluators/calibration.py`)."""
    if metric in _NO_INTERVAL:
        return (
            f"'{metric}' has no confidence interval: MCE is a maximum over bins, some nearly "
            "empty, and its bootstrap range covers the population value at no known rate; "
            "gate 'calibration.ece' or 'calibration.rmsce' (or their '_change') instead"
        )
    parts = metric.split(".")
    if parts[0] == "robustness" and parts[-1] == "ece":
        return (
            f"'{metric}' is the plug-in binned ECE under a shift, with a percentile bootstrap "
            "interval that binned ECE's upward bias leaves below its level; gate the shifted "
            "'accuracy_difference', or 'calibration.ece' (bounded on both sides) without a shift"
        )
    return None


# A recipe without an `evaluators:` section gets these: the statistics that need nothing from
# the data loader beyond labels (no groups) and no options.
DEFAULT_EVALUATORS: tuple[AnyEvaluatorSpec, ...] = (
    AccuracySpec(),
    PairedSpec(),
    CalibrationSpec(),
    ClassesSpec(),
    FidelitySpec(),
    SizeSpec(),
)
# One of each kind that needs no options: where a gate's metric may come from.
OPTIONLESS_EVALUATORS: tuple[EvaluatorSpec, ...] = (
    *DEFAULT_EVALUATORS,
    FairnessSpec(),
    LatencySpec(),
    ExemplarsSpec(),
    CosineSpec(),
    RetrievalSpec(),
)
# An embedding recipe without an `evaluators:` section gets these.
DEFAULT_EMBEDDING_EVALUATORS: tuple[AnyEvaluatorSpec, ...] = (
    CosineSpec(),
    RetrievalSpec(),
    SizeSpec(),
)
