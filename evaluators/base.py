"""What every evaluator shares: the registry of kinds, the subjects it compares, its context.

An evaluator is `evaluate(candidate, baseline, splits, spec, ctx) -> Result`, registered by
`kind`. `candidate` and `baseline` are `Subject`s: a variant with what is known of it on disk
and its outputs, computed once and shared by every evaluator of the stage. `baseline` is None
when the baseline itself is evaluated: comparisons are then left out. `ctx` carries the seed,
the stage's parent (for fidelity against the teacher), and one bootstrap per stage so that all
of a stage's intervals come from the same resamples.

A third-party evaluator (a plug-in, docs/plugins.md) is an `Evaluator` subclass found through
the entry point group `compressgate.evaluators` and loaded only under a trust policy that allows
its distribution (`compressgate.recipes.plugins`). It is given its recipe entry's `params`
validated by its `Params` model, and returns a `PluginResult` whose metrics are all under its
own prefix: anything else is refused, so a plug-in cannot stand in for a built-in metric.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from compressgate.evaluators import stats
from compressgate.evaluators.results import Estimate, EvaluationResult, PluginResult
from compressgate.evaluators.stats import Floats
from compressgate.recipes.data import Padding, Split, Splits
from compressgate.recipes.evaluation import EvaluatorSpec, PluginEvaluatorSpec
from compressgate.recipes.manifest import MetricName
from compressgate.recipes.plugins import Plugins, params_of
from compressgate.registry.kernel.digests import canonical_json, sha256_bytes
from compressgate.registry.kernel.errors import CompressgateError, StageError
from compressgate.registry.kernel.plugins import Registry

if TYPE_CHECKING:  # torch stays unloaded until a model is run
    import torch

    from compressgate.recipes.models import OnnxModel, TorchModel, Variant

S = TypeVar("S", bound=BaseModel)
TEST = "test"


@dataclass
class Subject:
    """A model under evaluation, what is known of it on disk, and its outputs (computed once).

    `onnx` is the form onnxruntime runs: the variant itself when it is ONNX, or the baseline's
    float32 export (the yardstick of sizes and onnxruntime latencies). `counts_from` is the torch
    module whose parameters and MACs describe it: the variant, or its float torch ancestor.
    """

    stage: str
    variant: Variant
    size_bytes: int
    sha256: str | None = None
    onnx: OnnxModel | None = None
    onnx_size_bytes: int | None = None
    counts_from: TorchModel | None = None
    outputs: dict[str, Floats] = field(default_factory=dict, repr=False)
    measurements: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def format(self) -> str:
        return self.variant.format

    def probabilities(self, x: torch.Tensor, key: str, padding: Padding | None = None) -> Floats:
        """Softmax of the model's logits on `x`, in float64, cached under `key`; batches trimmed
        when the splits declare `padding`."""
        if key not in self.outputs:
            import torch

            from compressgate.evaluators import runners

            logits = runners.logits(self.variant, x, padding).to(torch.float64)
            self.outputs[key] = torch.softmax(logits, dim=1).numpy()
        return self.outputs[key]

    def test_probabilities(self, split: Split, padding: Padding | None = None) -> Floats:
        return self.probabilities(split.x, TEST, padding)

    def embeddings(self, x: torch.Tensor, key: str, padding: Padding | None = None) -> Floats:
        """The model's raw outputs on `x` (an embedding model's vectors), in float64, cached
        under `key` (apart from `probabilities`' cache: the two never share a model); batches
        trimmed when the splits declare `padding`."""
        cache = f"embeddings:{key}"
        if cache not in self.outputs:
            import torch

            from compressgate.evaluators import runners

            outputs = runners.logits(self.variant, x, padding)
            self.outputs[cache] = outputs.to(torch.float64).numpy()
        return self.outputs[cache]

    def test_embeddings(self, split: Split, padding: Padding | None = None) -> Floats:
        return self.embeddings(split.x, TEST, padding)


@dataclass
class EvalContext:
    """Everything an evaluator may use besides its subjects: no globals."""

    seed: int
    stage: str
    splits: Splits
    parent: Subject | None = None
    workdir: Path | None = None
    _bootstraps: dict[int, stats.Bootstrap] = field(default_factory=dict, repr=False)

    def seed_for(self, purpose: str) -> int:
        """A seed for one purpose, from the run seed alone: every stage of a seed draws the same
        resamples and the same shifted inputs, so stages are compared on equal terms."""
        digest = sha256_bytes(canonical_json([self.seed, "evaluation", purpose]))
        return int(digest[:8], 16)

    def bootstrap(self, resamples: int) -> stats.Bootstrap:
        """The stage's bootstrap over the test split (shared by its evaluators)."""
        if resamples not in self._bootstraps:
            self._bootstraps[resamples] = stats.Bootstrap(
                len(self.splits.test), resamples, seed=self.seed_for(f"bootstrap-{resamples}")
            )
        return self._bootstraps[resamples]

    def error(self, kind: str, message: str, *, hint: str | None = None) -> StageError:
        return StageError(
            f"evaluator '{kind}' after stage '{self.stage}' (seed {self.seed}): {message}",
            stage=self.stage,
            hint=hint,
        )


class Evaluator(Generic[S]):
    """An evaluator of one `kind`. A plug-in's `Params` is the model of its recipe entry's
    `params` (none: it takes none)."""

    kind: ClassVar[str]
    Params: ClassVar[type[BaseModel] | None] = None

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: S,
        ctx: EvalContext,
    ) -> EvaluationResult | None:
        """The result, or None where the evaluator does not apply (a comparison, for the
        baseline itself)."""
        raise NotImplementedError


EVALUATORS: Registry[type[Evaluator[Any]]] = Registry("evaluator")

# Exemplars are judged across seeds (compressgate.evaluators.seeds), not after each stage.
_MODULES = {
    "accuracy": "compressgate.evaluators.accuracy",
    "paired": "compressgate.evaluators.paired",
    "calibration": "compressgate.evaluators.calibration",
    "fairness": "compressgate.evaluators.fairness",
    "classes": "compressgate.evaluators.classes",
    "fidelity": "compressgate.evaluators.fidelity",
    "robustness": "compressgate.evaluators.robustness",
    "latency": "compressgate.evaluators.latency",
    "size": "compressgate.evaluators.size",
    "cosine": "compressgate.evaluators.similarity",
    "retrieval": "compressgate.evaluators.similarity",
}


def load_evaluators() -> Registry[type[Evaluator[Any]]]:
    """Import the built-in evaluator modules (explicitly, no package walking); the registry."""
    for module in dict.fromkeys(_MODULES.values()):
        importlib.import_module(module)
    return EVALUATORS


def per_stage(specs: Iterable[EvaluatorSpec]) -> list[EvaluatorSpec]:
    """The specs evaluated after each stage (the across-seeds ones are not; plug-ins are)."""
    return [s for s in specs if s.kind in _MODULES or isinstance(s, PluginEvaluatorSpec)]


def evaluate_stage(
    specs: Iterable[EvaluatorSpec],
    candidate: Subject,
    baseline: Subject | None,
    splits: Splits,
    ctx: EvalContext,
    plugins: Plugins | None = None,
) -> dict[str, EvaluationResult]:
    """Run every per-stage evaluator on the candidate, plug-ins from those the run loaded
    (`plugins`); results keyed by kind, in spec order."""
    registry = load_evaluators()
    results: dict[str, EvaluationResult] = {}
    for spec in per_stage(specs):
        if isinstance(spec, PluginEvaluatorSpec):
            result: EvaluationResult | None = _plugin_result(
                spec, plugins or Plugins(), candidate, baseline, splits, ctx
            )
        else:
            result = registry.get(spec.kind)().evaluate(candidate, baseline, splits, spec, ctx)
        if result is not None:
            results[spec.kind] = result
    return results


_METRIC: TypeAdapter[str] = TypeAdapter(MetricName)


def _plugin_result(
    spec: PluginEvaluatorSpec,
    plugins: Plugins,
    candidate: Subject,
    baseline: Subject | None,
    splits: Splits,
    ctx: EvalContext,
) -> PluginResult | None:
    """A plug-in evaluator's result, checked: a `PluginResult` of its own kind whose metrics
    are all named under its prefix. Its failures are the stage's errors."""
    evaluator: Evaluator[Any] = plugins.get("evaluator", spec.kind).target()
    try:
        result = evaluator.evaluate(
            candidate, baseline, splits, params_of(type(evaluator), spec.params), ctx
        )
    except CompressgateError:
        raise
    except Exception as exc:
        raise ctx.error(spec.kind, f"{type(exc).__name__}: {exc}") from exc
    if result is None:
        return None
    if not isinstance(result, PluginResult) or result.kind != spec.kind:
        raise ctx.error(
            spec.kind,
            f"a plug-in evaluator returns a PluginResult of kind '{spec.kind}', not a "
            f"{type(result).__name__} of kind {getattr(result, 'kind', None)!r}",
        )
    for name in result.estimates:
        try:
            _METRIC.validate_python(name)
        except ValidationError:
            raise ctx.error(spec.kind, f"'{name}' is not a metric name") from None
        if not spec.provides(name):
            raise ctx.error(
                spec.kind,
                f"it reported the metric '{name}', outside its own prefix '{spec.metric_prefix}': "
                "a plug-in names its metrics under its prefix and never reports a built-in one",
            )
    return result


def flatten(results: dict[str, EvaluationResult]) -> dict[str, Estimate]:
    """Every result's metrics under their dotted names."""
    metrics: dict[str, Estimate] = {}
    for result in results.values():
        metrics |= result.metrics()
    return metrics


# --- estimates ----------------------------------------------------------------------------------


def wilson(
    successes: int, n: int, confidence: float, *, higher_is_better: bool | None = True
) -> Estimate:
    """A proportion with its Wilson interval."""
    low, high = stats.wilson_interval(successes, n, confidence)
    return Estimate(
        estimate=successes / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        n=n,
        confidence=confidence,
        method="wilson",
        higher_is_better=higher_is_better,
    )


def bootstrapped(
    point: float,
    replicates: np.ndarray,
    n: int,
    confidence: float,
    *,
    higher_is_better: bool | None,
    unit: str = "",
    paired: bool = False,
) -> Estimate:
    """A statistic with its percentile bootstrap interval.

    Binned and max-min statistics (ECE, MCE, gaps between groups) are biased upwards under
    resampling, and their percentile interval can miss the estimate itself; it is then widened
    to include it (which only raises its coverage) and the method says so.
    """
    low, high = stats.percentile_interval(replicates, confidence)
    kind = "paired bootstrap" if paired else "bootstrap"
    method = f"{kind} percentile ({len(replicates)} resamples)"
    if not low <= point <= high:
        low, high = min(low, point), max(high, point)
        method += ", widened to include the estimate"
    return Estimate(
        estimate=float(point),
        ci_low=low,
        ci_high=high,
        n=n,
        confidence=confidence,
        method=method,
        unit=unit,
        higher_is_better=higher_is_better,
    )


def extreme(
    estimates: Sequence[Estimate],
    *,
    lowest: bool,
    n: int,
    confidence: float,
    method: str,
    simultaneous: Sequence[Estimate] | None = None,
) -> Estimate:
    """The lowest (or highest) of several estimates, with an interval for the true extreme.

    The near end (the lower end of a minimum, the upper end of a maximum: what a `bound` gate
    on a worst value reads) is the extreme of `estimates`' own ends, each at `confidence`: it
    errs only if the bound of the true extreme's own item errs (P(min_g L_g > min_g θ_g) <=
    P(L_g* > θ_g*) for the fixed true argmin g*), so it needs no correction for the number of
    items (an intersection-union argument, Berger 1982, Technometrics 24:295). The far end must
    hold for every item at once: it comes from `simultaneous` (the same items, Bonferroni), or
    from `estimates` when they hold simultaneously themselves.
    """
    pick = min if lowest else max
    far = estimates if simultaneous is None else simultaneous
    return Estimate(
        estimate=pick(e.estimate for e in estimates),
        ci_low=pick(e.ci_low for e in (estimates if lowest else far)),
        ci_high=pick(e.ci_high for e in (far if lowest else estimates)),
        n=n,
        confidence=confidence,
        method=method,
        unit=estimates[0].unit,
        higher_is_better=estimates[0].higher_is_better,
    )
