"""Recipe manifest v1: frozen pydantic models, stages and gate rules in tagged unions.

A manifest is data only. `compressgate.recipes.load` reads one from YAML and adds the checks that
need the
file system or a trust file; the models here check everything a manifest says about itself.

    apiVersion: compressgate/v1
    kind: Recipe
    metadata: {name, version, owners, description}
    environment: {lock, strict, isolate}
    model: {factory | onnx, args, checkpoint}
    data: {loader, args}
    seeds: [0, 1, 2]
    stages: [distill | prune | quantize | export, ...]      # tagged by `kind`; or `plugin:`
    gates: [non_inferior | bound | relative, ...]            # tagged by `rule`
    budget: {seeds, epochs, latency_calls, batch_size}      # what a run may spend
"""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    JsonValue,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from compressgate.recipes.evaluation import (
    ACROSS_SEEDS,
    CLASSIFICATION_ONLY,
    DEFAULT_EMBEDDING_EVALUATORS,
    DEFAULT_EVALUATORS,
    EMBEDDING_ONLY,
    LATENCY_QUANTILES,
    OPTIONLESS_EVALUATORS,
    SESSION_CALLS,
    AccuracySpec,
    EvaluatorEntry,
    EvaluatorSpec,
    LatencySpec,
    PairedSpec,
    PluginEvaluatorSpec,
    comparison,
    order_statistic_calls,
    plugin_name,
    ungateable,
)
from compressgate.recipes.spec import (
    BUILTIN,
    PLUGIN,
    PluginEntrySchema,
    Spec,
    plugin_or_builtin,
)
from compressgate.registry.kernel.plugins import PLUGIN_NAME

API_VERSION = "compressgate/v1"
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Loc = tuple[str | int, ...]


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"'{value}' must be 1-64 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _metric(value: str) -> str:
    if not _METRIC.match(value):
        raise ValueError(f"'{value}' must be a metric name like 'accuracy' or 'latency.p95_ms'")
    return value


# The validators give readable messages; the published schema carries the same patterns.
Name = Annotated[
    str, AfterValidator(_name), WithJsonSchema({"type": "string", "pattern": _NAME.pattern})
]
MetricName = Annotated[
    str, AfterValidator(_metric), WithJsonSchema({"type": "string", "pattern": _METRIC.pattern})
]
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_REF = f"^{_DOTTED}:[A-Za-z][A-Za-z0-9_]*$"
Fraction = Annotated[float, Field(gt=0, lt=1)]
MAX_BATCH = 65_536  # the largest batch any field may name (a budget allows 1,024 by default)
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH)]


class FileRef(str):
    """A file the manifest names, relative to the manifest's folder and never outside it.

    The model checks the form (relative, no `..` climbing out); `compressgate.recipes.load` checks
    that the
    file exists and that, links resolved, it stays inside the manifest's folder.
    """

    __slots__ = ()

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._check,
            core_schema.str_schema(min_length=1),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def _check(cls, value: str) -> FileRef:
        path = PurePosixPath(value)
        if "\\" in value or path.is_absolute():
            raise ValueError(
                f"'{value}' must be a relative path with '/' separators (relative to the manifest)"
            )
        depth = 0
        for part in path.parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                raise ValueError(f"'{value}' escapes the manifest's folder; keep files inside it")
        return cls(value)


class ImportRef(str):
    """`package.module:function`, the form of a model factory or a data loader: one public
    name, defined in that module (no `module:other.attribute` reaching into what it imported)."""

    __slots__ = ()

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._check,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": _IMPORT_REF, "description": "package.module:function"}

    @classmethod
    def _check(cls, value: str) -> ImportRef:
        module, sep, attr = value.partition(":")
        parts = [*module.split("."), attr]
        if not sep or not all(_IDENTIFIER.match(p) and not keyword.iskeyword(p) for p in parts):
            raise ValueError(f"'{value}' must have the form 'package.module:function'")
        if attr.startswith("_"):
            raise ValueError(f"'{value}' names a private function ('{attr}'); name a public one")
        return cls(value)

    @property
    def module(self) -> str:
        return self.partition(":")[0]


# --- metadata, environment, model, data -------------------------------------------------------


_SHA256 = r"^[0-9a-f]{64}$"
Sha256 = Annotated[str, Field(pattern=_SHA256, description="sha256 of the file's exact bytes")]


class ManifestRef(Spec):
    """A signed manifest by name, version and the sha256 of its exact bytes."""

    name: Name
    version: int = Field(ge=1)
    sha256: Sha256


class DerivedFrom(Spec):
    """Where a recipe came from: trial `trial` of a sweep (`compressgate.recipes.sweep`) over
    the base recipe `recipe`, with the sweep's axes set to `params`. `check_provenance`
    re-derives the recipe from these and compares."""

    sweep: ManifestRef
    sweep_id: str = Field(description="the sweep run that proposed it")
    trial: int = Field(ge=0)
    recipe: ManifestRef = Field(description="the base recipe the sweep changed")
    params: dict[str, JsonValue] = Field(description="each axis path and the value it took")


class Metadata(Spec):
    name: Name
    version: int = Field(ge=1)
    owners: tuple[Name, ...] = Field(min_length=1)
    description: str = ""
    derived_from: DerivedFrom | None = Field(
        default=None, description="set on a recipe a sweep proposed: its provenance"
    )


class EnvironmentSpec(Spec):
    """The pinned environment: a lock file of exact `==` pins."""

    lock: FileRef
    strict: bool = Field(
        default=True, description="true: a mismatch stops the run; false: it is recorded"
    )
    isolate: bool = Field(
        default=False,
        description="true: the stages run in a virtual environment built from the lock "
        "(cached by its digest), not in the interpreter that runs compressgate",
    )


class ModelRef(Spec):
    """A torch model: a factory `module:function(**args) -> nn.Module`, weights optional."""

    factory: ImportRef
    args: dict[str, JsonValue] = Field(default_factory=dict)
    checkpoint: FileRef | None = Field(
        default=None, description="weights loaded with torch.load(weights_only=True) or safetensors"
    )

    def describe(self) -> str:
        weights = f" with weights {self.checkpoint}" if self.checkpoint else ""
        return f"{self.factory}({format_args(self.args)}){weights}"


class TrainSpec(Spec):
    """Train the baseline in-process on the train split (deterministic in the seed)."""

    epochs: int = Field(ge=1, le=10_000)
    lr: float = Field(default=1e-3, gt=0, lt=10)
    batch_size: BatchSize = 64


class ModelSpec(Spec):
    """The baseline: a torch factory, or an ONNX file for the stages that work on ONNX.

    A factory's weights come from `checkpoint`, or from training it in-process (`train`).
    """

    factory: ImportRef | None = None
    args: dict[str, JsonValue] = Field(default_factory=dict)
    checkpoint: FileRef | None = None
    train: TrainSpec | None = Field(
        default=None, description="train the factory's model on the train split first"
    )
    onnx: FileRef | None = None
    pretrained: bool = Field(
        default=False,
        description="true: the factory returns its weights itself (a pretrained model that ships "
        "in a pinned package); no 'checkpoint' or 'train'",
    )
    task: Literal["classification", "embedding"] = Field(
        default="classification",
        description="classification: logits over the loader's classes, judged against the "
        "labels; embedding: one vector per sample, judged against the baseline's vectors",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.factory is None) == (self.onnx is None):
            raise ValueError("give exactly one of 'factory' or 'onnx'")
        if self.onnx is not None and (
            self.checkpoint is not None or self.args or self.train is not None or self.pretrained
        ):
            raise ValueError(
                "'checkpoint', 'train', 'pretrained' and 'args' go with 'factory', not with 'onnx'"
            )
        if self.pretrained and (self.checkpoint is not None or self.train is not None):
            raise ValueError(
                "'pretrained' says the factory brings its own weights; drop 'checkpoint' and "
                "'train', or 'pretrained'"
            )
        return self

    def describe(self) -> str:
        if self.task == "embedding":
            return f"{self._describe()}, an embedding model"
        return self._describe()

    def _describe(self) -> str:
        if self.onnx is not None:
            return f"the ONNX model {self.onnx}"
        assert self.factory is not None
        text = ModelRef(factory=self.factory, args=self.args, checkpoint=self.checkpoint).describe()
        if self.pretrained:
            text += " with the pretrained weights it loads"
        if self.train is not None:
            text += (
                f", trained for {self.train.epochs} epochs (lr {self.train.lr:g}, "
                f"batch {self.train.batch_size})"
            )
        return text


class DataSpec(Spec):
    """A loader `module:function(seed, **args) -> Splits` (train, calibration, test)."""

    loader: ImportRef
    args: dict[str, JsonValue] = Field(default_factory=dict)


# --- stages ------------------------------------------------------------------------------------


class StageBase(Spec):
    name: Name


class DistillHint(Spec):
    """A feature (hint) loss between a student layer and a teacher layer."""

    student_layer: str = Field(min_length=1)
    teacher_layer: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class DistillSpec(StageBase):
    """Distillation into a smaller student; the incoming model is the default teacher.

    A classifier learns the teacher's softened logits and the labels (`objective: logits`); an
    embedding model learns the teacher's vectors on unlabelled text (`objective: embedding`):
    `cosine` · (1 − cosine) + `mse` · MSE to the teachers' mean vector.
    """

    kind: Literal["distill"] = "distill"
    student: ModelRef
    objective: Literal["logits", "embedding"] = Field(
        default="logits",
        description="logits: KL to the softened teacher plus cross-entropy on labels; "
        "embedding: cosine and MSE to the teacher's vectors (model.task: embedding)",
    )
    cosine: float = Field(
        default=1.0, ge=0, le=1000, description="objective embedding: weight of 1 − cosine"
    )
    mse: float = Field(default=0.0, ge=0, le=1000, description="objective embedding: weight of MSE")
    teachers: tuple[ModelRef, ...] = Field(
        default=(), description="an ensemble of teachers; empty: the incoming model"
    )
    temperature: float = Field(default=4.0, gt=0, le=100)
    temperature_final: float | None = Field(
        default=None, gt=0, le=100, description="anneal linearly to this temperature"
    )
    alpha: float = Field(
        default=0.5, ge=0, le=1, description="weight of the KL·T² term; 1 - alpha on cross-entropy"
    )
    hints: tuple[DistillHint, ...] = ()
    epochs: int = Field(default=20, ge=1, le=10_000)
    batch_size: BatchSize = 64
    lr: float = Field(default=1e-3, gt=0, lt=10)

    def describe(self) -> str:
        teachers = (
            "the incoming model"
            if not self.teachers
            else " + ".join(t.describe() for t in self.teachers)
        )
        schedule = (
            f"temperature {self.temperature:g} annealed to {self.temperature_final:g}"
            if self.temperature_final is not None
            else f"temperature {self.temperature:g}"
        )
        hints = f", {len(self.hints)} hint loss(es)" if self.hints else ""
        if self.objective == "embedding":
            terms = [f"{w:g}·(1 − cosine)" for w in (self.cosine,) if w]
            terms += [f"{w:g}·MSE" for w in (self.mse,) if w]
            return (
                f"distil {teachers} into {self.student.describe()} on the teacher's vectors "
                f"({' + '.join(terms)}) for {self.epochs} epochs{hints}"
            )
        return (
            f"distil {teachers} into {self.student.describe()} at {schedule}, "
            f"alpha {self.alpha:g} (KL·T²) for {self.epochs} epochs{hints}"
        )


class VocabularySpec(Spec):
    """Vocabulary trimming: keep the rows of a token-embedding table that the training text
    uses; every other token reads the row of `unknown_id`."""

    layer: str = Field(min_length=1, description="the nn.Embedding's module path")
    unknown_id: int = Field(ge=0, description="the token every dropped token becomes, e.g. [UNK]")
    first_rows: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="also keep the table's first rows: a WordPiece vocabulary lists its special "
        "and single-character tokens first, then its pieces roughly by frequency",
    )


class PruneSpec(StageBase):
    """Magnitude (unstructured) or structured (channels removed) pruning, over N rounds.

    On a transformer encoder (Hugging Face BERT-style layers), structured pruning removes whole
    attention heads (`heads`) and feed-forward channels (`sparsity`), ranked by `importance`,
    and can trim the token table to the training text's vocabulary (`vocabulary`).
    """

    kind: Literal["prune"] = "prune"
    method: Literal["magnitude", "structured"]
    sparsity: Fraction = Field(
        description="magnitude: the fraction of weights set to zero; structured: the fraction "
        "of channels removed from each prunable layer"
    )
    scope: Literal["global", "layer"] = "global"
    rounds: int = Field(default=1, ge=1, le=100)
    finetune_epochs: int = Field(default=1, ge=0, le=1000)
    skip: tuple[str, ...] = Field(default=(), description="layer names never pruned")
    heads: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="structured, transformers: the share of attention heads removed from "
        "every layer (sparsity is then the share of feed-forward channels removed)",
    )
    importance: Literal["magnitude", "activation"] = Field(
        default="magnitude",
        description="activation (transformers): rank heads and channels by their mean "
        "activation over the training split times the norm of the weights reading them",
    )
    vocabulary: VocabularySpec | None = None
    lr: float = Field(default=1e-3, gt=0, lt=10)
    batch_size: BatchSize = 64

    def describe(self) -> str:
        what = (
            "structured pruning (channels removed)"
            if self.method == "structured"
            else f"{self.scope} magnitude pruning"
        )
        skip = f", skipping {', '.join(self.skip)}" if self.skip else ""
        if self.heads:
            what = (
                f"transformer pruning ({self.heads:.0%} of attention heads and "
                f"{self.sparsity:.0%} of feed-forward channels removed, {self.importance} "
                "importance)"
            )
            vocabulary = (
                ", the token table trimmed to the training text's tokens"
                + (
                    f" and its first {self.vocabulary.first_rows:,} rows"
                    if self.vocabulary.first_rows
                    else ""
                )
                + f" ({self.vocabulary.layer})"
                if self.vocabulary
                else ""
            )
            return (
                f"{what} over {self.rounds} round(s), {self.finetune_epochs} fine-tuning "
                f"epoch(s) after each{vocabulary}"
            )
        return (
            f"{what} to {self.sparsity:.0%} sparsity over {self.rounds} round(s), "
            f"{self.finetune_epochs} fine-tuning epoch(s) after each{skip}"
        )


class QuantizeSpec(StageBase):
    """int8 quantization through onnxruntime (dynamic, static) or quantization-aware training."""

    kind: Literal["quantize"] = "quantize"
    method: Literal["dynamic", "static", "qat"]
    per_channel: bool = True
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_samples: int = Field(default=256, ge=1, le=1_000_000)
    keep_float: tuple[str, ...] = Field(
        default=("first", "last"),
        description="layers kept in float: names, or 'first' / 'last'",
    )
    qat_epochs: int = Field(default=2, ge=1, le=1000)
    lr: float = Field(default=1e-4, gt=0, lt=10, description="learning rate of qat fine-tuning")
    batch_size: BatchSize = 64

    def describe(self) -> str:
        channel = "per-channel" if self.per_channel else "per-tensor"
        parts = [f"{self.method} int8 quantization, {channel} weights"]
        if self.method == "static":
            parts.append(f"{self.calibration} calibration on {self.calibration_samples} samples")
        if self.method == "qat":
            parts.append(f"{self.qat_epochs} quantization-aware epoch(s)")
        parts.append(
            f"{' and '.join(self.keep_float)} kept in float" if self.keep_float else "all in int8"
        )
        return ", ".join(parts)


class ExportSpec(StageBase):
    """ONNX export with a pinned opset and a parity check against the torch model."""

    kind: Literal["export"] = "export"
    opset: int = Field(
        default=18, ge=18, le=23, description="torch's ONNX exporter writes opset 18 or later"
    )
    external_data: bool = False
    parity_atol: float = Field(default=1e-4, gt=0)

    def describe(self) -> str:
        external = ", weights as external data" if self.external_data else ""
        return (
            f"export to ONNX opset {self.opset}{external}, "
            f"parity with torch checked to {self.parity_atol:g}"
        )


StageSpec = Annotated[
    DistillSpec | PruneSpec | QuantizeSpec | ExportSpec, Field(discriminator="kind")
]
STAGE_KINDS: tuple[str, ...] = ("distill", "prune", "quantize", "export")


def _stage_plugin_name(value: str) -> str:
    return plugin_name(value, "stage", STAGE_KINDS)


class PluginStageSpec(StageBase):
    """A third-party stage: an entry point of group `compressgate.stages`, which runs only if
    the trust policy's `plugins` allows its distribution. `params` is the plug-in's to define:
    its own model validates them when a run starts (`compressgate.recipes.plugins`)."""

    is_plugin: ClassVar[bool] = True
    kind: Annotated[str, AfterValidator(_stage_plugin_name)] = Field(
        alias="plugin",
        description="the plug-in's entry point name in the group compressgate.stages",
        json_schema_extra={"pattern": PLUGIN_NAME.pattern},
    )
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="the plug-in's options, checked by the plug-in"
    )

    def describe(self) -> str:
        given = f" with {format_args(self.params)}" if self.params else ""
        return f"plug-in stage '{self.kind}'{given}"


# A stage entry: a built-in kind (the tagged union above), or a plug-in (`plugin:`).
StageEntry = Annotated[
    Annotated[StageSpec, Tag(BUILTIN)] | Annotated[PluginStageSpec, Tag(PLUGIN)],
    Discriminator(plugin_or_builtin),
    PluginEntrySchema(),
]
AnyStage = DistillSpec | PruneSpec | QuantizeSpec | ExportSpec | PluginStageSpec


# --- gates -------------------------------------------------------------------------------------


def _level(confidence: float | None) -> str:
    return "its evaluator's confidence" if confidence is None else f"confidence {confidence:.0%}"


SeedPolicy = Literal["every", "mean", "worst"]
SEED_POLICIES: dict[str, str] = {
    "every": "every seed must pass on its own",
    "mean": "the interval of the mean over the seeds is judged, counting the test-sample "
    "variance the seeds share (accuracy, sizes and basis: estimate only)",
    "worst": "the seed with the worst estimate is judged",
}


class Planning(Spec):
    """What a power check assumes: how often the candidate's prediction differs from the
    baseline's, and the chance the gate should have of passing a candidate that is truly as
    good as the baseline."""

    discordance: float = Field(
        default=0.02,
        gt=0,
        lt=1,
        description="share of test samples on which the candidate and the baseline disagree",
    )
    power: float = Field(default=0.8, gt=0.5, lt=1)


class GateBase(Spec):
    name: Name
    owner: Name
    metric: MetricName
    after: Name | None = Field(
        default=None,
        description="a stage name; default: the last stage. A gate that fails after an "
        "intermediate stage stops the pipeline before the later stages run",
    )
    seeds: SeedPolicy = Field(
        default="every", description="; ".join(f"{k}: {v}" for k, v in SEED_POLICIES.items())
    )
    approval: Literal["none", "required"] = Field(
        default="none", description="required: a passing gate waits for its owner's signed approval"
    )
    promotion: Literal["seed", "run"] = Field(
        default="seed",
        description="seed: a variant may be promoted only if its own seed passed this gate (or "
        "the gate's failure was waived), whatever the seeds policy decided over the seeds; run: "
        "the decision over the seeds suffices (with 'mean' or 'worst', a seed that failed on "
        "its own may then be promoted)",
    )
    planning: Planning = Field(default_factory=Planning)
    description: str = ""

    def where(self) -> str:
        return f"after stage {self.after}" if self.after else "after the last stage"


class NonInferiorGate(GateBase):
    """Passes when the candidate is shown no worse than the baseline by more than `margin`."""

    rule: Literal["non_inferior"] = "non_inferior"
    margin: Fraction
    confidence: float = Field(default=0.95, gt=0.5, lt=1)

    def describe(self) -> str:
        return (
            f"{self.metric} must be shown non-inferior to the baseline: the lower bound of the "
            f"{2 * self.confidence - 1:.0%} interval of (candidate - baseline) must be "
            f"above -{self.margin:g} (one-sided confidence {self.confidence:.0%})"
        )


Basis = Literal["interval", "estimate"]


class BoundGate(GateBase):
    """An absolute bound on the metric: by default its interval must lie inside the bound."""

    rule: Literal["bound"] = "bound"
    max: float | None = None
    min: float | None = None
    basis: Basis = Field(
        default="interval", description="interval: judge the conservative end of the interval"
    )
    confidence: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="the interval's level: its evaluator's (if given, it must be the same)",
    )

    @model_validator(mode="after")
    def _some_bound(self) -> BoundGate:
        if self.max is None and self.min is None:
            raise ValueError("give 'max', 'min' or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min:g}) is above 'max' ({self.max:g})")
        return self

    def describe(self) -> str:
        what = (
            self.metric
            if self.basis == "estimate"
            else f"the interval of {self.metric} (at {_level(self.confidence)})"
        )
        limits = []
        if self.min is not None:
            limits.append(f"at least {self.min:g}")
        if self.max is not None:
            limits.append(f"at most {self.max:g}")
        return f"{what} must be {' and '.join(limits)}"


class RelativeGate(GateBase):
    """A bound on the change from the baseline, absolute or as a fraction of the baseline."""

    rule: Literal["relative"] = "relative"
    max_drop: float | None = Field(default=None, ge=0)
    max_increase: float | None = Field(default=None, ge=0)
    relative: bool = Field(default=False, description="true: fractions of the baseline value")
    basis: Basis = "interval"
    confidence: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="the interval's level: its evaluator's (if given, it must be the same)",
    )

    @model_validator(mode="after")
    def _some_bound(self) -> RelativeGate:
        if self.max_drop is None and self.max_increase is None:
            raise ValueError("give 'max_drop', 'max_increase' or both")
        return self

    def describe(self) -> str:
        unit = " of the baseline" if self.relative else ""

        def amount(x: float) -> str:
            return f"{x:.1%}" if self.relative else f"{x:g}"

        limits = []
        if self.max_drop is not None:
            limits.append(f"drop by at most {amount(self.max_drop)}{unit}")
        if self.max_increase is not None:
            limits.append(f"rise by at most {amount(self.max_increase)}{unit}")
        side = (
            ""
            if self.basis == "estimate"
            else f" (judged on the interval of the change, at {_level(self.confidence)})"
        )
        return f"{self.metric} may {' and '.join(limits)} against the baseline{side}"


GateSpec = Annotated[NonInferiorGate | BoundGate | RelativeGate, Field(discriminator="rule")]
GATE_RULES: tuple[str, ...] = ("non_inferior", "bound", "relative")


# --- the budget --------------------------------------------------------------------------------

MAX_SEEDS = 1_000
MAX_STAGES = 100
# What no budget may allow: a declared figure above its cap is itself refused.
BUDGET_CAPS = {
    "seeds": MAX_SEEDS,
    "epochs": 100_000,
    "latency_calls": 1_000_000,
    "batch_size": MAX_BATCH,
}


class Budget(Spec):
    """What one run may spend. A recipe over a figure is refused when it is validated; a larger
    figure declared here allows it, up to the field's cap. The defaults admit every bundled
    example several times over."""

    seeds: int = Field(
        default=10,
        ge=1,
        le=BUDGET_CAPS["seeds"],
        description="seeds a run may have; each trains its own baseline and runs every stage. "
        "Default 10",
    )
    epochs: int = Field(
        default=1_000,
        ge=1,
        le=BUDGET_CAPS["epochs"],
        description="training epochs the whole run may spend: seeds × (model.train.epochs + "
        "each distill stage's epochs + each prune stage's rounds × finetune_epochs + each qat "
        "stage's qat_epochs). Default 1,000",
    )
    latency_calls: int = Field(
        default=10_000,
        ge=1,
        le=BUDGET_CAPS["latency_calls"],
        description="calls of each model one latency measurement may make: the sum over its "
        "batch_sizes of warmup + repeats (batch_repeats where given); it measures after every "
        "stage of every seed. Default 10,000",
    )
    batch_size: int = Field(
        default=1_024,
        ge=1,
        le=BUDGET_CAPS["batch_size"],
        description="the largest batch a training (model.train, distill, prune, quantize) or a "
        "latency batch size may use. Default 1,024",
    )


# --- the recipe --------------------------------------------------------------------------------


class Recipe(Spec):
    """A compression recipe: baseline, data, seeds, environment, stages and decision gates."""

    api_version: Literal["compressgate/v1"] = Field(alias="apiVersion")
    kind: Literal["Recipe"]
    metadata: Metadata
    environment: EnvironmentSpec
    model: ModelSpec
    data: DataSpec
    seeds: tuple[Annotated[int, Field(ge=0, lt=2**32)], ...] = Field(
        default=(0,), min_length=1, max_length=MAX_SEEDS
    )
    stages: tuple[StageEntry, ...] = Field(min_length=1, max_length=MAX_STAGES)
    evaluators: tuple[EvaluatorEntry, ...] = Field(
        default=DEFAULT_EVALUATORS,
        description="what is measured after every stage; accuracy always is. Default: accuracy, "
        "paired, calibration, classes, fidelity, size",
    )
    gates: tuple[GateSpec, ...] = ()
    budget: Budget = Field(
        default_factory=Budget,
        description="what a run may spend (seeds, training epochs, latency calls, batch size); "
        "a recipe over a figure is refused, and a larger figure declared here allows it",
    )

    def evaluator_specs(self) -> tuple[EvaluatorSpec, ...]:
        """The declared evaluators, with accuracy and the paired comparison first whether
        declared or not (a classifier: accuracy gates are judged on the paired counts); an
        embedding model's, or cosine, retrieval and size when none are declared."""
        declared = tuple(self.evaluators)
        if self.model.task == "embedding":
            given = "evaluators" in self.model_fields_set
            return declared if given else DEFAULT_EMBEDDING_EVALUATORS
        kinds = {spec.kind for spec in declared}
        missing = [spec for spec in (AccuracySpec(), PairedSpec()) if spec.kind not in kinds]
        return (*missing, *declared)

    def judged(self, gate: GateSpec) -> GateSpec:
        """`gate` with the one-sided confidence it is judged at made explicit: a `bound` or
        `relative` gate without one takes that of the evaluator whose interval it reads (the
        paired change's, for a `relative` gate on an interval), so that the recorded rule says
        what level the evidence had to reach."""
        if isinstance(gate, NonInferiorGate) or gate.confidence is not None:
            return gate
        read = gate.metric
        if isinstance(gate, RelativeGate) and gate.basis == "interval":
            how = comparison(gate.metric)
            read = (how.ratio if gate.relative else how.difference) or gate.metric
        for spec in self.evaluator_specs():
            if read in spec.metric_names():
                return gate.model_copy(update={"confidence": spec.confidence})
        return gate

    def metric_names(self) -> tuple[str, ...]:
        """Every metric the evaluators give a compressed stage: what gates may judge."""
        return tuple(name for spec in self.evaluator_specs() for name in spec.metric_names())

    def onnx_only_metrics(self) -> tuple[str, ...]:
        """The metrics measured only on ONNX variants (after quantize or export stages)."""
        return tuple(name for spec in self.evaluator_specs() for name in spec.onnx_only())

    def stage(self, name: str) -> AnyStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def mean_supported(gate: GateSpec) -> str | None:
    """Why `seeds: mean` cannot be judged validly on `gate`; None if it can. The interval of the
    mean over the seeds must count the test-sample variance they share, measured from every
    seed's per-sample evidence, which accuracy alone records (`AccuracyResult.labels`,
    `.predictions`); sizes have no sampling error and `basis: estimate` compares estimates."""
    if isinstance(gate, BoundGate | RelativeGate) and gate.basis == "estimate":
        return None
    if gate.metric == "accuracy" or comparison(gate.metric).exact:
        return None
    return (
        f"'mean' judges the interval of the mean over the seeds, which must count the test-sample "
        f"variance the seeds share: it is measured from per-sample evidence, recorded for "
        f"'accuracy' only, not for '{gate.metric}'; use 'every' or 'worst'"
    )


def recipe_issues(recipe: Recipe) -> Iterator[tuple[Loc, str]]:
    """Checks across fields that the field types cannot express, each at its exact path."""
    for index, owner in enumerate(recipe.metadata.owners):
        if owner in recipe.metadata.owners[:index]:
            yield ("metadata", "owners", index), f"owner '{owner}' is listed twice"
    seen_seeds: set[int] = set()
    for index, seed in enumerate(recipe.seeds):
        if seed in seen_seeds:
            yield ("seeds", index), f"seed {seed} is listed twice"
        seen_seeds.add(seed)
    stage_names: dict[str, int] = {}
    for index, stage in enumerate(recipe.stages):
        if stage.name in stage_names:
            yield (
                ("stages", index, "name"),
                f"duplicate stage name '{stage.name}' (first at stages[{stage_names[stage.name]}]);"
                " give each stage its own name",
            )
        else:
            stage_names[stage.name] = index
    known = ", ".join(stage_names)
    gate_names: set[str] = set()
    for index, gate in enumerate(recipe.gates):
        if gate.name in gate_names:
            yield ("gates", index, "name"), f"duplicate gate name '{gate.name}'"
        gate_names.add(gate.name)
        if gate.after is not None and gate.after not in stage_names:
            yield ("gates", index, "after"), f"no stage is named '{gate.after}'; stages: {known}"
        if gate.seeds == "mean" and len(recipe.seeds) < 2:
            yield (
                ("gates", index, "seeds"),
                f"'mean' judges the interval of the mean over the seeds and needs at least two "
                f"seeds (the recipe has {len(recipe.seeds)}); use 'every' or add seeds",
            )
        elif gate.seeds == "mean":
            why = mean_supported(gate)
            if why is not None:
                yield ("gates", index, "seeds"), why
    yield from _format_issues(recipe)
    yield from _evaluator_issues(recipe)
    yield from budget_issues(recipe)
    if (
        recipe.model.factory is not None
        and recipe.model.checkpoint is None
        and recipe.model.train is None
        and not recipe.model.pretrained
    ):
        yield (
            ("model",),
            (
                "the baseline has no weights: give a 'checkpoint', 'train' to train it "
                "in-process, or 'pretrained: true' if the factory loads them itself"
            ),
        )
    if recipe.model.task == "embedding":
        if recipe.model.train is not None:
            yield (
                ("model", "train"),
                "training needs labels to fit, and an embedding model has none here; give a "
                "'checkpoint' or 'pretrained: true'",
            )
        for index, stage in enumerate(recipe.stages):
            if isinstance(stage, QuantizeSpec) and stage.method == "qat":
                yield (
                    ("stages", index, "kind"),
                    f"stage '{stage.name}' fine-tunes on labels (cross-entropy), which an "
                    "embedding model does not have; embedding recipes quantize dynamic or "
                    "static, and distill with 'objective: embedding'",
                )
            if isinstance(stage, DistillSpec) and stage.objective != "embedding":
                yield (
                    ("stages", index, "objective"),
                    f"stage '{stage.name}' distils logits and labels, which an embedding model "
                    "does not have; set 'objective: embedding' to learn the teacher's vectors",
                )
    for index, stage in enumerate(recipe.stages):
        if (
            recipe.model.task != "embedding"
            and isinstance(stage, DistillSpec)
            and stage.objective == "embedding"
        ):
            yield (
                ("stages", index, "objective"),
                f"stage '{stage.name}' learns embeddings, and this recipe's model is a "
                "classifier; use 'objective: logits', or set 'task: embedding' under model",
            )
        if (
            isinstance(stage, DistillSpec)
            and stage.objective == "embedding"
            and not stage.cosine
            and not stage.mse
        ):
            yield (
                ("stages", index, "cosine"),
                f"stage '{stage.name}': cosine and mse are both 0, so nothing is learnt; "
                "give one a positive weight",
            )
        if isinstance(stage, PruneSpec) and stage.method != "structured":
            for name in ("heads", "vocabulary"):
                if getattr(stage, name):
                    yield (
                        ("stages", index, name),
                        f"stage '{stage.name}': {name} needs 'method: structured' (whole heads "
                        "and rows are removed)",
                    )
            if stage.importance != "magnitude":
                yield (
                    ("stages", index, "importance"),
                    f"stage '{stage.name}': activation importance ranks heads and channels; "
                    "it needs 'method: structured'",
                )


# Which stages need a torch model; quantize (static, dynamic) and export produce ONNX.
def _format_issues(recipe: Recipe) -> Iterator[tuple[Loc, str]]:
    producer = "the ONNX baseline" if recipe.model.onnx is not None else None
    for index, stage in enumerate(recipe.stages):
        needs_torch = isinstance(stage, DistillSpec | PruneSpec) or (
            isinstance(stage, QuantizeSpec) and stage.method == "qat"
        )
        if needs_torch and producer is not None:
            yield (
                ("stages", index, "kind"),
                f"stage '{stage.name}' needs a torch model, but it comes after {producer}, "
                "which is ONNX; put torch stages (distill, prune, qat) first",
            )
        if isinstance(stage, QuantizeSpec | ExportSpec):
            producer = f"stage '{stage.name}'"


def _evaluator_issues(recipe: Recipe) -> Iterator[tuple[Loc, str]]:
    kinds: dict[str, int] = {}
    embedding = recipe.model.task == "embedding"
    for index, spec in enumerate(recipe.evaluator_specs() if embedding else recipe.evaluators):
        if embedding and spec.kind in CLASSIFICATION_ONLY:
            yield (
                ("evaluators", index, "kind"),
                f"'{spec.kind}' judges predicted classes against labels, and this recipe's model "
                f"is an embedding model (model.task: embedding); measure it with "
                f"{', '.join(EMBEDDING_ONLY)}, latency and size",
            )
        if not embedding and spec.kind in EMBEDDING_ONLY:
            yield (
                ("evaluators", index, "kind"),
                f"'{spec.kind}' compares embeddings, and this recipe's model is a classifier; set "
                "'task: embedding' under model if it outputs one vector per sample",
            )
        if spec.kind in kinds:
            yield (
                ("evaluators", index, "kind"),
                f"evaluator '{spec.kind}' is declared twice "
                f"(first at evaluators[{kinds[spec.kind]}]); give its options once",
            )
        kinds.setdefault(spec.kind, index)
        if spec.kind in ACROSS_SEEDS and len(recipe.seeds) < 2:
            yield (
                ("evaluators", index, "kind"),
                f"'{spec.kind}' compares models across seeds and needs at least two seeds "
                f"(the recipe has {len(recipe.seeds)})",
            )
        if isinstance(spec, LatencySpec) and spec.runner == "torch":
            onnx = [s.name for s in recipe.stages if _makes_onnx(s)]
            if onnx or recipe.model.onnx is not None:
                what = f"stage '{onnx[0]}' makes ONNX" if onnx else "the baseline is ONNX"
                yield (
                    ("evaluators", index, "runner"),
                    f"the torch runner cannot time ONNX variants ({what}); use 'auto' or "
                    "'onnxruntime'",
                )
    known = recipe.metric_names()
    declared = {spec.kind for spec in recipe.evaluator_specs()}
    others = {
        name: spec.kind
        for spec in OPTIONLESS_EVALUATORS
        if spec.kind not in declared
        for name in spec.metric_names()
    }
    onnx_only = recipe.onnx_only_metrics()
    giver = {n: each for each in recipe.evaluator_specs() for n in each.metric_names()}
    plugins = [s for s in recipe.evaluator_specs() if isinstance(s, PluginEvaluatorSpec)]
    for index, gate in enumerate(recipe.gates):
        plugin = next((s for s in plugins if s.provides(gate.metric)), None)
        if plugin is not None:  # the plug-in's own metric: whether it reports it shows at run
            if not isinstance(gate, BoundGate):
                yield (
                    ("gates", index, "rule"),
                    f"'{gate.metric}' comes from the plug-in evaluator '{plugin.kind}', and no "
                    "paired interval of its change from the baseline is measured: gate it with "
                    "'bound'",
                )
            continue
        source = giver.get(gate.metric)
        if (
            isinstance(gate, BoundGate | RelativeGate)
            and gate.confidence is not None
            and source is not None
            and source.confidence != gate.confidence
        ):
            yield (
                ("gates", index, "confidence"),
                f"this gate judges the interval the '{source.kind}' evaluator reports, at its "
                f"confidence {source.confidence:g}; set 'confidence: {gate.confidence:g}' on that "
                "evaluator instead, or drop it here",
            )
        refused = ungateable(gate.metric) if gate.metric in giver else None
        if refused is not None:
            yield ("gates", index, "metric"), refused
            continue
        yield from _comparable(gate, index, giver)
        if gate.metric in known:
            stages = {stage.name: stage for stage in recipe.stages}
            judged = stages.get(gate.after) if gate.after else recipe.stages[-1]
            if (
                gate.metric in onnx_only
                and judged is not None  # an unknown `after` is reported on its own
                and recipe.model.onnx is None
                and not _makes_onnx(judged)
            ):
                yield (
                    ("gates", index, "metric"),
                    f"'{gate.metric}' is measured on ONNX variants only, and stage "
                    f"'{judged.name}' is torch; judge it after a quantize or export stage",
                )
            continue
        if gate.metric in others:
            kind = others[gate.metric]
            message = (
                f"'{gate.metric}' comes from the '{kind}' evaluator, which the recipe does not "
                f"declare; add '- {{kind: {kind}}}' under evaluators"
            )
        else:
            close = difflib.get_close_matches(gate.metric, [*known, *others], n=3, cutoff=0.6)
            message = f"no evaluator gives the metric '{gate.metric}'; " + (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else "`compressgate recipe explain` lists the metrics this recipe's evaluators give"
            )
        yield ("gates", index, "metric"), message


def _comparable(
    gate: GateSpec, index: int, giver: dict[str, EvaluatorSpec]
) -> Iterator[tuple[Loc, str]]:
    """A `relative` or `non_inferior` gate is judged on a paired interval of the change from the
    baseline (`compressgate.recipes.evaluation.comparison`): refused where none is measured."""
    if isinstance(gate, BoundGate) or (isinstance(gate, RelativeGate) and gate.basis == "estimate"):
        return
    if gate.metric not in giver:
        return  # an unknown metric is reported on its own
    how = comparison(gate.metric)
    if how.exact:
        return
    rule = f"rule '{gate.rule}' on '{gate.metric}'"
    if isinstance(gate, RelativeGate) and gate.relative:
        needed = how.ratio
        if needed is None:
            if how.why:
                yield ("gates", index, "metric"), f"{rule}: {how.why}"
            else:
                yield (
                    ("gates", index, "relative"),
                    f"{rule}: a change as a fraction of the baseline needs a paired ratio, and "
                    f"'{gate.metric}' has a paired difference only ('{how.difference}'): set "
                    "'relative: false' and give the limits in the metric's units",
                )
            return
    else:
        needed = how.difference
        if needed is None:
            if how.why:
                yield ("gates", index, "metric"), f"{rule}: {how.why}"
            else:
                yield (
                    ("gates", index, "rule"),
                    f"{rule}: '{gate.metric}' has a paired ratio only ('{how.ratio}'): use rule "
                    "'relative' with 'relative: true'",
                )
            return
    source = giver.get(needed)
    if source is None:
        yield (
            ("gates", index, "metric"),
            f"{rule} is judged on the paired interval '{needed}', which no declared evaluator "
            f"measures: add the '{needed.split('.')[0]}' evaluator",
        )
    elif (
        isinstance(gate, NonInferiorGate)
        and gate.metric != "accuracy"  # Tango's interval is recomputed at the gate's level
        and source.confidence != gate.confidence
    ):
        yield (
            ("gates", index, "confidence"),
            f"this gate judges the interval '{needed}' that the '{source.kind}' evaluator "
            f"reports, at its confidence {source.confidence:g}; set 'confidence: "
            f"{gate.confidence:g}' on that evaluator, or {source.confidence:g} here",
        )


def budget_issues(recipe: Recipe) -> Iterator[tuple[Loc, str]]:
    """The recipe against its budget: each figure over it, at the field that adds the most.

    The run's epochs multiply its seeds: they are checked once the seeds are within budget, so
    that one cause gives one message."""
    budget = recipe.budget
    if len(recipe.seeds) > budget.seeds:
        yield (
            ("seeds",),
            f"{len(recipe.seeds):,} seeds, over {_limit(recipe, 'seeds')}; each seed trains its "
            f"own baseline and runs every stage: {_fix('seeds', len(recipe.seeds), 'use fewer')}",
        )
    else:
        yield from _epoch_issues(recipe)
    for index, spec in enumerate(recipe.evaluators):
        if isinstance(spec, LatencySpec):
            yield from _latency_issues(recipe, index, spec)
    for loc, size in _batch_sizes(recipe):
        if size > budget.batch_size:
            yield (
                loc,
                f"batch size {size:,}, over {_limit(recipe, 'batch_size')}: "
                f"{_fix('batch_size', size, 'use a smaller one')}",
            )


def budget_figures(recipe: Recipe) -> dict[str, int]:
    """What the recipe would spend, by budget field (what `budget_issues` holds against it)."""
    latency = [latency_calls(s) for s in recipe.evaluators if isinstance(s, LatencySpec)]
    return {
        "seeds": len(recipe.seeds),
        "epochs": len(recipe.seeds) * sum(epochs for _, _, epochs in epoch_terms(recipe)),
        "latency_calls": max(latency, default=0),
        "batch_size": max((size for _, size in _batch_sizes(recipe)), default=0),
    }


def epoch_terms(recipe: Recipe) -> list[tuple[Loc, str, int]]:
    """The training epochs each seed spends: (the field, how it reads, epochs)."""
    terms: list[tuple[Loc, str, int]] = []
    if recipe.model.train is not None:
        epochs = recipe.model.train.epochs
        terms.append((("model", "train", "epochs"), f"model.train.epochs {epochs:,}", epochs))
    for index, stage in enumerate(recipe.stages):
        where = f"stages[{index}]"
        if isinstance(stage, DistillSpec):
            terms.append(
                (("stages", index, "epochs"), f"{where}.epochs {stage.epochs:,}", stage.epochs)
            )
        elif isinstance(stage, PruneSpec) and stage.finetune_epochs:
            field = "rounds" if stage.rounds > stage.finetune_epochs else "finetune_epochs"
            terms.append(
                (
                    ("stages", index, field),
                    f"{where} {stage.rounds:,} rounds × {stage.finetune_epochs:,} finetune_epochs",
                    stage.rounds * stage.finetune_epochs,
                )
            )
        elif isinstance(stage, QuantizeSpec) and stage.method == "qat":
            terms.append(
                (
                    ("stages", index, "qat_epochs"),
                    f"{where}.qat_epochs {stage.qat_epochs:,}",
                    stage.qat_epochs,
                )
            )
    return terms


def _epoch_issues(recipe: Recipe) -> Iterator[tuple[Loc, str]]:
    terms = epoch_terms(recipe)
    per_seed = sum(epochs for _, _, epochs in terms)
    total = len(recipe.seeds) * per_seed
    if total <= recipe.budget.epochs:
        return
    loc = max(terms, key=lambda term: term[2])[0]
    seeds = len(recipe.seeds)
    yield (
        loc,
        f"the run would train for {total:,} epochs ({seeds:,} seed{'s' * (seeds > 1)} × "
        f"{per_seed:,}: {' + '.join(text for _, text, _ in terms)}), over "
        f"{_limit(recipe, 'epochs')}: {_fix('epochs', total, 'train for fewer')}",
    )


def latency_calls(spec: LatencySpec) -> int:
    """The calls of each model one latency measurement makes: warm-up and timed, every batch."""
    return sum(spec.warmup + spec.repeats_at(size) for size in spec.batch_sizes)


def _latency_issues(recipe: Recipe, index: int, spec: LatencySpec) -> Iterator[tuple[Loc, str]]:
    """The latency evaluator against the budget, and its timed calls against the gates that
    read its intervals: a percentile bound needs enough calls for an order-statistic bound at
    the gate's one-sided confidence, a ratio enough calls a session to estimate its percentile."""
    calls = latency_calls(spec)
    if calls > recipe.budget.latency_calls:
        plain = [size for size in spec.batch_sizes if size not in spec.batch_repeats]
        shares = {
            "warmup": spec.warmup * len(spec.batch_sizes),
            "repeats": spec.repeats * len(plain),
            "batch_repeats": sum(spec.batch_repeats.values()),
        }
        field = max(shares, key=lambda name: shares[name])
        each = "; ".join(
            f"batch {size:,}: {spec.warmup:,} warm-up + {spec.repeats_at(size):,}"
            for size in spec.batch_sizes
        )
        yield (
            ("evaluators", index, field),
            f"latency would call each model {calls:,} times per measurement ({each}), after "
            f"every stage of every seed; over {_limit(recipe, 'latency_calls')}: "
            f"{_fix('latency_calls', calls, 'lower its repeats')}",
        )
    names = spec.metric_names()
    for number, gate in enumerate(recipe.gates):
        if gate.metric not in names or isinstance(gate, NonInferiorGate):
            continue
        if gate.basis == "estimate" or (isinstance(gate, RelativeGate) and not gate.relative):
            continue  # no interval read, or refused by `_comparable`
        parts = gate.metric.split(".")
        size = int(parts[1].removeprefix("batch_")) if len(parts) == 3 else spec.batch_sizes[0]
        measure, _, unit = parts[-1].rpartition("_")
        if parts[-1] == "speedup_p50":
            measure, unit = "p50", "ratio"
        if measure not in LATENCY_QUANTILES or (isinstance(gate, RelativeGate) and unit != "ms"):
            continue  # throughput: a bound on p50, which any 20 calls serve
        field = "batch_repeats" if size in spec.batch_repeats else "repeats"
        where = f"evaluators[{index}].{field}" + (f"[{size}]" if field == "batch_repeats" else "")
        have = spec.repeats_at(size)
        confidence = recipe.judged(gate).confidence or spec.confidence
        if isinstance(gate, BoundGate) and unit == "ms":
            sides = [(True, "upper")] if gate.max is not None else []
            sides += [(False, "lower")] if gate.min is not None else []
            for upper, end in sides:
                needed = order_statistic_calls(LATENCY_QUANTILES[measure], confidence, upper=upper)
                if have < needed:
                    yield (
                        ("evaluators", index, field),
                        f"gate '{gate.name}' (gates[{number}]) bounds {measure} at batch size "
                        f"{size:,} by its interval's {end} end at one-sided confidence "
                        f"{confidence:g}: an order-statistic bound needs at least {needed:,} "
                        f"timed calls, and {where} is {have:,}; set it to {needed:,} or more",
                    )
        else:  # a ratio (or the speedup): estimated in every session
            needed = spec.sessions * SESSION_CALLS[measure]
            if spec.session_calls(size) < SESSION_CALLS[measure]:
                yield (
                    ("evaluators", index, field),
                    f"gate '{gate.name}' (gates[{number}]) judges the candidate / baseline ratio "
                    f"of {measure} at batch size {size:,}, whose interval is over the "
                    f"{spec.sessions} sessions' estimates, and a session needs "
                    f"{SESSION_CALLS[measure]:,} calls to estimate {measure}: {where} is "
                    f"{have:,}; set it to {needed:,} or more, or use fewer sessions",
                )


def _batch_sizes(recipe: Recipe) -> Iterator[tuple[Loc, int]]:
    """Every batch size the recipe names, with its field."""
    if recipe.model.train is not None:
        yield ("model", "train", "batch_size"), recipe.model.train.batch_size
    for index, stage in enumerate(recipe.stages):
        if isinstance(stage, DistillSpec | PruneSpec | QuantizeSpec):
            yield ("stages", index, "batch_size"), stage.batch_size
    for index, spec in enumerate(recipe.evaluators):
        if isinstance(spec, LatencySpec):
            for position, size in enumerate(spec.batch_sizes):
                yield ("evaluators", index, "batch_sizes", position), size


def _limit(recipe: Recipe, field: str) -> str:
    value = getattr(recipe.budget, field)
    if field in recipe.budget.model_fields_set:
        return f"budget.{field} ({value:,})"
    return f"the default budget.{field} ({value:,})"


def _fix(field: str, needed: int, remedy: str) -> str:
    """What to do: `remedy`, or declare the figure, unless it is over any budget's cap."""
    cap = BUDGET_CAPS[field]
    if needed > cap:
        return f"{remedy}: no budget may allow more than {cap:,}"
    return f"{remedy}, or declare `budget.{field}: {needed}` to allow it"


def _makes_onnx(stage: AnyStage) -> bool:
    """Every quantize (qat too, after its fine-tuning) and export stage outputs ONNX."""
    return isinstance(stage, QuantizeSpec | ExportSpec)


def iter_refs(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, FileRef | ImportRef]]:
    """Every file and import reference in a model, with its path (aliases as in YAML)."""
    if isinstance(value, FileRef | ImportRef):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from iter_refs(getattr(value, name), (*loc, field.alias or name))
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from iter_refs(item, (*loc, index))


def format_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in args.items())
