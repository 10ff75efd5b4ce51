"""A run as `audit verify` reads it: straight from its stored documents, each parsed only where
a check looks, so that re-deriving every decision and checking every attestation of a large
catalog costs what those checks read and not the full record of every run.

- `StoredRun` is what `gates.judge.judge_gate` judges (its `JudgedRun` protocol) and what
  `attestation.check_attestation` compares with the signed statement: the run's variants, each
  with its artifact digest, the sha256 of its metrics document as stored (what a run/v2
  attestation signs), its metrics (the document parsed when a gate first reads it, each
  estimate validated when read) and its evaluations (the kinds the gates read, read with the
  run; any other from the catalog when asked for);
- `stored_metrics_digest` is `attestation.metrics_digest` (run/v1's evidence) computed from
  the stored document: the stored form leaves out every field that holds its default
  (`chain.compact`), so the full form is the defaults with the stored fields over them.

Nothing here is keyed by content: two runs with the same evidence are checked twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from compressgate.evaluators.results import Estimate, EvaluationResult
from compressgate.registry.catalog.chain import read_json, unpack_metrics

if TYPE_CHECKING:
    from compressgate.registry.catalog.policies import RunEvidence
    from compressgate.registry.catalog.repository import Catalog

# The gates read these evaluations (`gates.verdicts.judge`: the paired test's counts); they are
# read with the runs, any other kind when a gate asks for it.
JUDGED_EVALUATIONS = ("paired",)

_DEFAULTS = {
    name: info.default for name, info in Estimate.model_fields.items() if not info.is_required()
}
_RESULT: TypeAdapter[Any] = TypeAdapter(EvaluationResult)


def stored_metrics_digest(metrics: Mapping[str, Any]) -> str:
    """`attestation.metrics_digest` of the metrics a variant's stored document holds
    (`chain.unpack_metrics` of it): each estimate's JSON with its defaults filled in."""
    body = {key: {**_DEFAULTS, **value} for key, value in metrics.items()}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Metrics(Mapping[str, Estimate]):
    """A variant's metrics, each validated the first time it is read."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self._read: dict[str, Estimate] = {}

    def __getitem__(self, key: str) -> Estimate:
        found = self._read.get(key)
        if found is None:
            found = self._read[key] = Estimate.model_validate(self.raw[key])
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


class _Evaluations(Mapping[str, Any]):
    """A variant's evaluations: the kinds read with the run, others from the catalog on demand."""

    def __init__(self, catalog: Catalog, variant_id: str, stored: dict[str, str]) -> None:
        self._catalog = catalog
        self._variant = variant_id
        self._stored = stored  # kind -> its stored document, None when the variant has none
        self._read: dict[str, Any] = {}
        self._complete = False

    def _all(self) -> dict[str, str]:
        if not self._complete:
            self._stored = self._catalog.evaluation_documents(self._variant)
            self._complete = True
        return self._stored

    def __getitem__(self, kind: str) -> Any:
        if kind in self._read:
            return self._read[kind]
        text = self._stored.get(kind)
        if text is None and kind not in JUDGED_EVALUATIONS:
            text = self._all().get(kind)
        if text is None:
            raise KeyError(kind)
        found = self._read[kind] = _RESULT.validate_python(read_json(text))
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class StoredStage:
    """One seed's variant of one stage, as stored: its metrics document parsed the first time
    a gate reads a metric (or a run/v1 attestation needs its full form)."""

    status = "done"

    def __init__(
        self,
        catalog: Catalog,
        variant_id: str,
        seed: int,
        name: str,
        artifact_sha256: str,
        metrics_text: str,
        evaluations: dict[str, str],
    ) -> None:
        self.seed = seed
        self.name = name
        self.artifact_sha256 = artifact_sha256
        self._text = metrics_text
        self._metrics: _Metrics | None = None
        self.evaluations = _Evaluations(catalog, variant_id, evaluations)

    @property
    def stored_sha256(self) -> str:
        """sha256 of the metrics document as stored (a run/v2 attestation's evidence)."""
        return hashlib.sha256(self._text.encode("utf-8")).hexdigest()

    @property
    def metrics(self) -> _Metrics:
        if self._metrics is None:
            self._metrics = _Metrics(unpack_metrics(read_json(self._text)))
        return self._metrics

    def full_sha256(self) -> str:
        """`stored_metrics_digest` of the metrics (a run/v1 attestation's evidence)."""
        return stored_metrics_digest(self.metrics.raw)


@dataclass(frozen=True)
class _Recipe:
    sha256: str


class StoredRun:
    """A run's stored evidence (`catalog.run_evidence`), as the gates and the attestation
    check read a run."""

    def __init__(self, catalog: Catalog, evidence: RunEvidence) -> None:
        self.run_id = evidence.run_id
        self.recipe = _Recipe(evidence.recipe_sha256)
        self.status = evidence.status
        self.seeds = evidence.seeds
        self.environment_sha256 = evidence.environment_sha256
        self.lock_sha256 = evidence.lock_sha256
        self.stages: list[StoredStage] = []
        self._by_name: dict[tuple[int, str], StoredStage] = {}
        for variant_id, seed, name, artifact, text in evidence.variants:
            kinds = {
                kind: evidence.evaluations[f"{variant_id}/{kind}"]
                for kind in JUDGED_EVALUATIONS
                if f"{variant_id}/{kind}" in evidence.evaluations
            }
            stage = StoredStage(catalog, variant_id, seed, name, artifact, text, kinds)
            self.stages.append(stage)
            self._by_name[(seed, name)] = stage

    def stage(self, seed: int, name: str) -> StoredStage:
        """The variant of stage `name` of `seed` (KeyError: the run has none)."""
        found = self._by_name.get((seed, name))
        if found is None:
            raise KeyError(f"{self.run_id} has no variant of stage '{name}' for seed {seed}")
        return found
