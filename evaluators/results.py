"""The result models every evaluator returns: an estimate always travels with its interval.

`Estimate` is the unit of evidence a gate reads: the point estimate, a two-sided interval at
`confidence`, the number of samples behind it and the method that made the interval. A quantity
measured without sampling error (bytes on disk, a parameter count) has a zero-width interval and
`method="exact"`: it is still stated as an interval, so every consumer reads one shape.

Each evaluator's result is a model tagged by `kind` whose `metrics()` flattens it to dotted
metric names (`calibration.ece_change`, `latency.speedup_p50`): the names the recipe's gates
refer to, declared by the evaluator specs in `compressgate.recipes.evaluation`. Comparisons with
the baseline
are absent (None) when the evaluated model is the baseline itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag


class Estimate(BaseModel):
    """A point estimate with its two-sided `confidence` interval over `n` samples."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95
    method: str
    unit: str = ""
    higher_is_better: bool | None = None

    @classmethod
    def exact(
        cls, value: float, *, unit: str = "", higher_is_better: bool | None = None
    ) -> Estimate:
        """A quantity without sampling error: its interval is the point itself."""
        return cls(
            estimate=value,
            ci_low=value,
            ci_high=value,
            n=1,
            method="exact",
            unit=unit,
            higher_is_better=higher_is_better,
        )


class Result(BaseModel):
    """Base of every evaluator result."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    def metrics(self) -> dict[str, Estimate]:
        """The result as dotted metric names (what gates judge)."""
        raise NotImplementedError


def _present(prefix: str, values: dict[str, Estimate | None]) -> dict[str, Estimate]:
    return {f"{prefix}{name}": value for name, value in values.items() if value is not None}


class AccuracyResult(Result):
    """Top-1 accuracy with a Wilson interval, and the predictions behind it."""

    kind: Literal["accuracy"] = "accuracy"
    accuracy: Estimate
    correct: int
    predictions: list[int] = Field(description="the predicted label of every test sample")
    labels: list[int] | None = Field(
        default=None,
        description="the label of every test sample: with the baseline's predictions, the "
        "per-sample evidence a `seeds: mean` gate judges jointly across seeds",
    )
    ids: list[int] | None = Field(
        default=None,
        description="the data loader's id of every test sample (Split.ids), when it gives them: "
        "whether the seeds share their test samples",
    )

    def metrics(self) -> dict[str, Estimate]:
        return {"accuracy": self.accuracy}


class PairedResult(Result):
    """The candidate against the baseline on the same samples."""

    kind: Literal["paired"] = "paired"
    b: int = Field(description="samples only the baseline got right")
    c: int = Field(description="samples only the candidate got right")
    n: int
    baseline_accuracy: float
    candidate_accuracy: float
    difference: Estimate = Field(description="accuracy(candidate) - accuracy(baseline), Tango")
    mcnemar_pvalue: float
    mcnemar_midp: float

    def metrics(self) -> dict[str, Estimate]:
        return {"paired.accuracy_difference": self.difference}


class ReliabilityBin(BaseModel):
    """One bin of a reliability diagram: ((lower, upper]], its samples' confidence and accuracy."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


class CalibrationResult(Result):
    kind: Literal["calibration"] = "calibration"
    bins: int
    measures: dict[str, Estimate] = Field(description="ece, mce, rmsce, classwise_ece, brier, nll")
    changes: dict[str, Estimate] | None = Field(
        default=None, description="candidate - baseline of each measure, paired bootstrap"
    )
    baseline_measures: dict[str, float] | None = None
    debiased: dict[str, float] | None = Field(
        default=None,
        description="leave-one-out estimates of ece, rmsce, classwise_ece: never biased upwards "
        "(the estimates in `measures` are the plug-in ones, biased upwards)",
    )
    baseline_debiased: dict[str, float] | None = None
    reliability: list[ReliabilityBin]
    baseline_reliability: list[ReliabilityBin] | None = None

    def metrics(self) -> dict[str, Estimate]:
        names = _present("calibration.", dict(self.measures))
        if self.changes is not None:
            names |= {f"calibration.{m}_change": e for m, e in self.changes.items()}
        return names


class GroupRow(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    group: int
    name: str
    n: int
    accuracy: Estimate
    baseline_accuracy: float | None = None
    drop: Estimate | None = Field(
        default=None, description="accuracy(baseline) - accuracy(candidate) in this group"
    )
    b: int | None = Field(default=None, description="samples only the baseline got right")
    c: int | None = Field(default=None, description="samples only the candidate got right")


class FairnessResult(Result):
    kind: Literal["fairness"] = "fairness"
    task: Literal["binary", "multiclass"]
    groups: list[GroupRow]
    worst_group: str
    worst_group_accuracy: Estimate
    worst_group_accuracy_drop: Estimate | None = None
    accuracy_gap: Estimate
    demographic_parity_difference: Estimate
    equalized_odds_difference: Estimate
    equal_opportunity_difference: Estimate
    # candidate - baseline, bounded by the spread of the groups' paired changes (None for the
    # baseline itself)
    accuracy_gap_change: Estimate | None = None
    demographic_parity_difference_change: Estimate | None = None
    equalized_odds_difference_change: Estimate | None = None
    equal_opportunity_difference_change: Estimate | None = None

    def metrics(self) -> dict[str, Estimate]:
        return _present(
            "fairness.",
            {
                "worst_group_accuracy": self.worst_group_accuracy,
                "worst_group_accuracy_drop": self.worst_group_accuracy_drop,
                "accuracy_gap": self.accuracy_gap,
                "demographic_parity_difference": self.demographic_parity_difference,
                "equalized_odds_difference": self.equalized_odds_difference,
                "equal_opportunity_difference": self.equal_opportunity_difference,
                "accuracy_gap_change": self.accuracy_gap_change,
                "demographic_parity_difference_change": self.demographic_parity_difference_change,
                "equalized_odds_difference_change": self.equalized_odds_difference_change,
                "equal_opportunity_difference_change": self.equal_opportunity_difference_change,
            },
        )


class ClassRow(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    label: int
    name: str
    n: int
    recall: Estimate
    baseline_recall: float | None = None
    drop: Estimate | None = Field(default=None, description="recall(baseline) - recall(candidate)")
    b: int | None = Field(default=None, description="samples only the baseline got right")
    c: int | None = Field(default=None, description="samples only the candidate got right")
    pvalue: float | None = Field(default=None, description="McNemar exact within the class")
    adjusted_pvalue: float | None = Field(default=None, description="Holm over the classes")
    significant: bool | None = None


class ClassesResult(Result):
    kind: Literal["classes"] = "classes"
    alpha: float
    classes: list[ClassRow]
    most_affected: list[str] = Field(
        description="classes with the largest recall drop, worst first"
    )
    worst_recall: Estimate
    worst_recall_drop: Estimate | None = None

    def metrics(self) -> dict[str, Estimate]:
        return _present(
            "classes.",
            {"worst_recall": self.worst_recall, "worst_recall_drop": self.worst_recall_drop},
        )


class FidelityResult(Result):
    kind: Literal["fidelity"] = "fidelity"
    against: Literal["baseline", "parent"]
    reference: str = Field(description="the stage the candidate is compared with")
    agreement: Estimate
    kl_divergence: Estimate
    negative_flip_rate: Estimate
    positive_flip_rate: Estimate

    def metrics(self) -> dict[str, Estimate]:
        return {
            "fidelity.agreement": self.agreement,
            "fidelity.kl_divergence": self.kl_divergence,
            "fidelity.negative_flip_rate": self.negative_flip_rate,
            "fidelity.positive_flip_rate": self.positive_flip_rate,
        }


class ShiftRow(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    kind: str
    level: int = Field(description="1-based position of the severity in the recipe")
    severity: float
    accuracy: Estimate
    baseline_accuracy: float | None = None
    accuracy_difference: Estimate | None = None
    ece: Estimate
    agreement: Estimate | None = None
    b: int | None = Field(default=None, description="samples only the baseline got right")
    c: int | None = Field(default=None, description="samples only the candidate got right")


class RobustnessResult(Result):
    kind: Literal["robustness"] = "robustness"
    shifts: list[ShiftRow]
    worst_accuracy_difference: Estimate | None = None

    def metrics(self) -> dict[str, Estimate]:
        names: dict[str, Estimate] = {}
        for row in self.shifts:
            names |= _present(
                f"robustness.{row.kind}.s{row.level}.",
                {
                    "accuracy": row.accuracy,
                    "accuracy_difference": row.accuracy_difference,
                    "ece": row.ece,
                    "agreement": row.agreement,
                },
            )
        return names | _present(
            "robustness.", {"worst_accuracy_difference": self.worst_accuracy_difference}
        )


class SequenceLengths(BaseModel):
    """The lengths the timed calls of one batch size ran at, when the data declares its padding:
    consecutive batches of the test split, each trimmed to its longest sample, cycled."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    axis: int = Field(description="the padded axis of the input")
    stored: int = Field(description="the length the data is stored at (fixed padding's)")
    batches: int = Field(description="distinct batches cycled through")
    mean: float = Field(description="mean length over the timed calls")
    min: int
    max: int


class LatencyBatch(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    batch_size: int
    quantiles_ms: dict[str, Estimate] = Field(description="p50, p90, p95, p99 of the candidate")
    baseline_quantiles_ms: dict[str, Estimate] | None = None
    speedup_p50: Estimate | None = Field(
        default=None, description="baseline p50 / candidate p50, bootstrap over interleaved pairs"
    )
    throughput: Estimate = Field(description="samples per second at the p50 latency")
    repeats: int | None = Field(default=None, description="timed calls of each model")
    ratios: dict[str, Estimate] | None = Field(
        default=None,
        description="candidate / baseline of p50, p90, p95, p99 from the same interleaved calls, "
        "intervals over the sessions",
    )
    sessions: int | None = Field(
        default=None, description="sessions the calls were split into (the intervals' replicates)"
    )
    sequence_lengths: SequenceLengths | None = Field(
        default=None,
        description="with padding declared: the input lengths of the timed calls (None: every "
        "call ran the first rows of the test split at the stored length)",
    )


class LatencyResult(Result):
    kind: Literal["latency"] = "latency"
    runner: str = Field(description="the runtime that timed the candidate")
    baseline_runner: str | None = None
    threads: dict[str, int]
    warmup: int
    repeats: int
    timer_overhead_ns: float = Field(description="median time the harness adds to one call")
    batches: list[LatencyBatch]
    sessions: int | None = Field(default=None, description="sessions per batch size")
    compared_with: str | None = Field(
        default=None,
        description="what every speedup and ratio is relative to: the baseline's stage, its "
        "form and the runtime that timed it, interleaved with the candidate",
    )

    def metrics(self) -> dict[str, Estimate]:
        names: dict[str, Estimate] = {}
        for index, batch in enumerate(self.batches):
            values: dict[str, Estimate | None] = dict(
                {f"{q}_ms": e for q, e in batch.quantiles_ms.items()},
                speedup_p50=batch.speedup_p50,
                throughput=batch.throughput,
            )
            values |= {f"{q}_ratio": e for q, e in (batch.ratios or {}).items()}
            names |= _present(f"latency.batch_{batch.batch_size}.", values)
            if index == 0:
                names |= _present("latency.", values)
        return names


class SizeResult(Result):
    kind: Literal["size"] = "size"
    reference: str = Field(description="what `ratio` divides by")
    bytes: Estimate
    ratio: Estimate | None = None
    times_smaller: Estimate | None = Field(
        default=None,
        description="the reference's bytes over the candidate's: `min: 3.5` reads '3.5x smaller' "
        "exactly, where `ratio`'s `max: 0.2857` rounds",
    )
    params: Estimate | None = None
    nonzero_params: Estimate | None = None
    macs: Estimate | None = None
    counts_from: str | None = Field(default=None, description="where params and MACs were counted")
    peak_memory_bytes: Estimate | None = None
    peak_memory_ratio: Estimate | None = None
    memory_note: str | None = None

    def metrics(self) -> dict[str, Estimate]:
        return _present(
            "size.",
            {
                "bytes": self.bytes,
                "ratio": self.ratio,
                "times_smaller": self.times_smaller,
                "params": self.params,
                "nonzero_params": self.nonzero_params,
                "macs": self.macs,
                "peak_memory_bytes": self.peak_memory_bytes,
                "peak_memory_ratio": self.peak_memory_ratio,
            },
        )


class ExemplarsResult(Result):
    """Compression-identified exemplars of one stage, over the recipe's seeds."""

    kind: Literal["exemplars"] = "exemplars"
    seeds: list[int]
    n: int = Field(description="test samples present in every seed's test split")
    count: int
    fraction: Estimate
    ids: list[int] = Field(description="the exemplars' sample ids")
    baseline_accuracy_on_exemplars: float | None = None
    candidate_accuracy_on_exemplars: float | None = None
    baseline_accuracy_elsewhere: float | None = None
    note: str | None = None

    def metrics(self) -> dict[str, Estimate]:
        return {"exemplars.fraction": self.fraction}


class CosineResult(Result):
    """An embedding model's per-sample cosine similarity to the baseline's embeddings."""

    kind: Literal["cosine"] = "cosine"
    n: int
    mean: Estimate
    p1: Estimate = Field(description="the 1st percentile (lower order statistic)")
    minimum: Estimate
    worst: list[int] = Field(description="sample ids of the least similar samples, worst first")

    def metrics(self) -> dict[str, Estimate]:
        return {"cosine.mean": self.mean, "cosine.p1": self.p1, "cosine.min": self.minimum}


class RetrievalResult(Result):
    """Nearest-neighbour retrieval among the test samples, candidate against baseline."""

    kind: Literal["retrieval"] = "retrieval"
    n: int
    k: int
    top1_agreement: Estimate = Field(description="share of samples keeping their nearest")
    overlap_at_k: Estimate = Field(description="mean share of the k nearest kept")

    def metrics(self) -> dict[str, Estimate]:
        return {
            "retrieval.top1_agreement": self.top1_agreement,
            "retrieval.overlap_at_k": self.overlap_at_k,
        }


class PluginResult(Result):
    """What a plug-in evaluator returns: its metrics by their full dotted names, each under the
    plug-in's own prefix (`toy_weights.l2_norm` from `toy-weights`: checked when it returns, so
    a plug-in never reports a built-in metric), and anything else it records, as plain JSON."""

    kind: str = Field(description="the plug-in's name (its entry point's)")
    estimates: dict[str, Estimate] = Field(description="metric name → estimate")
    details: dict[str, JsonValue] = Field(default_factory=dict)

    def metrics(self) -> dict[str, Estimate]:
        return dict(self.estimates)


BuiltinResult = Annotated[
    AccuracyResult
    | PairedResult
    | CalibrationResult
    | FairnessResult
    | ClassesResult
    | FidelityResult
    | RobustnessResult
    | LatencyResult
    | SizeResult
    | ExemplarsResult
    | CosineResult
    | RetrievalResult,
    Field(discriminator="kind"),
]
_BUILTIN_KINDS = frozenset(
    str(member.model_fields["kind"].default) for member in get_args(get_args(BuiltinResult)[0])
)


def _result_branch(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "plug-in" if isinstance(kind, str) and kind not in _BUILTIN_KINDS else "built-in"


# A stored result: a built-in's (tagged by `kind`), or a plug-in's, whose kind is its name.
EvaluationResult = Annotated[
    Annotated[BuiltinResult, Tag("built-in")] | Annotated[PluginResult, Tag("plug-in")],
    Discriminator(_result_branch),
]


class SeedAggregate(BaseModel):
    """One metric of one stage over the recipe's seeds: mean, t interval, worst seed, spread."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    sd: float
    spread: float = Field(description="largest minus smallest seed estimate")
    worst: float | None = Field(default=None, description="the worst seed's estimate")
    worst_seed: int | None = None
    worst_ci_low: float | None = None
    worst_ci_high: float | None = None
    confidence: float = 0.95
    method: str = "student t over seeds"
    unit: str = ""
    higher_is_better: bool | None = None
