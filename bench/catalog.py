"""The catalog at scale: 100,000 variants and 1,000,000 events, and how fast it answers, to
library calls and to the commands themselves.

Targets (issue: catalog scale): resolving an alias ≤ 5 ms, a variant's lineage ≤ 20 ms, a page
of the run list ≤ 50 ms, `audit verify` of the hash chain ≥ 200,000 events/s, and registering
one variant ≤ 2 ms on SQLite.

A seeded synthetic catalog is appended through `Catalog.append` in large transactions: runs of
five stages (baseline → distill → prune → int8 → export, each variant's `parent_sha256` the
artifact of the stage before) over several recipes, with each run's seed, evaluations, gate
decisions and end, and alias moves (promotions and rollbacks) across a few aliases, until the
chain holds exactly the requested number of events. Then, on that catalog, through the public
methods, after a warm-up:

- alias resolve: `Catalog.alias(name)` of a random alias;
- lineage: `Catalog.lineage(ref)` of a random run's last stage, by id and by a sha256 prefix;
- list page: `Catalog.runs(limit=50, ...)`: the newest page, a random offset, and a random
  offset of one recipe;
- audit verify: `Catalog.verify_chain()` over every event (events/s);
- registering one variant: `Catalog.record_stage(...)` of a new stage, committed, without and
  with one evaluation.

Each operation is timed `--repeat` times; the median is judged, the p95 reported.

Before those library calls (which append to the catalog), the commands people wait for are
run as a person runs them: the console script, a fresh process each time, against the
catalog and a workspace in the same temporary folder (`--workspace DIR --catalog URL`):

- `audit verify --skip-meaning --skip-artifacts` over every event (target ≤ 30 s at 1,000,000
  events; a synthetic catalog's records mean nothing, and its variants have no files), with
  the rate it prints beside the events checked over the wall time this script measured;
- `audit verify --since CHECKPOINT` (target ≤ 2 s), the checkpoint signed by `audit
  checkpoint` with an auditor's key when the chain held 99% of its events (the synthesis
  pauses there), so that 1% are new;
- `alias history`, `alias resolve` (the alias's file, put in the workspace's store, hashed)
  and `catalog list` (target ≤ 0.5 s each), `catalog lineage`, `review status`, `promote`
  (a real move of an alias, to a variant whose run passed every gate), and for
  reference `--help` and the floor under every catalog command: a Python that imports
  SQLModel and the catalog's dialect and driver, and runs nothing of compressgate's.

Each command's first run is reported as "cold" and judged (a fresh process; the OS page cache
as the synthesis and the commands before left it), then the median and worst of
`--command-runs` more ("warm"). The synthetic recipes' gates are those synthesis judges (each
run's gates decided, passed 90% of the time): a run whose every gate was decided and passed is
approved, as a real one is. No command registers a bare synthetic variant (a variant enters the
catalog through `compressgate run` of a recipe): registering is the library's figure below.

The script is a measurement: it exits 0 whether or not a target is met, and marks a miss
MISS.

    python bench/catalog.py                                  # SQLite in a temporary folder
    python bench/catalog.py --quick                          # 10,000 variants, 100,000 events
    python bench/catalog.py --catalog postgresql+psycopg://USER@HOST/DB   # an empty catalog
    python bench/catalog.py --json                           # machine-readable figures
    python bench/catalog.py --quick --against-mlflow         # beside MLflow's model registry

With --against-mlflow, MLflow's model registry (its in-process client on its own SQLAlchemy
store, a SQLite file in the same folder) gets the same shape of workload: one registered model
per recipe, as many versions as variants, the same aliases; then the operations both offer
are timed as ours were (alias resolve, the newest page, registering, moving an alias) and each
ratio printed. MLflow has no lineage, no chain to verify and no release to sign.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, where its name could hide a
# package of the same name: look packages up where they are installed instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import statistics  # after the folder is dropped: bench/statistics.py would hide it

import sqlalchemy as sa

from compressgate.evaluators.results import (
    AccuracyResult,
    CalibrationResult,
    ClassesResult,
    ClassRow,
    Estimate,
    FairnessResult,
    FidelityResult,
    GroupRow,
    LatencyBatch,
    LatencyResult,
    PairedResult,
    ReliabilityBin,
    SeedAggregate,
    SizeResult,
)
from compressgate.registry.catalog.chain import compact, deflated, pack_metrics, stored
from compressgate.registry.catalog.records import StageRecord
from compressgate.registry.catalog.repository import (
    SCHEMA_VERSION,
    AliasMoveRow,
    Catalog,
    EvaluationRow,
    GateDecisionRow,
    GateJudgementRow,
    PolicyRow,
    RecipeRow,
    RunEndRow,
    RunRow,
    RunSeedRow,
    VariantRow,
    document,
    safe_url,
)

VARIANTS, EVENTS = 100_000, 1_000_000
GOAL_ALIAS_MS, GOAL_LINEAGE_MS, GOAL_PAGE_MS = 5.0, 20.0, 50.0
GOAL_VERIFY_EVENTS_S, GOAL_REGISTER_MS = 200_000.0, 2.0
GOAL_COLD_S = 0.5  # alias history, alias resolve, catalog list: a fresh process, first run
GOAL_AUDIT_S, GOAL_SINCE_S = 30.0, 2.0  # audit verify: every event; --since, 1% new events
SINCE_FRACTION = 0.99  # the checkpoint is signed when the chain holds this share of its events
PAGE = 50

# (stage name, kind, format): one seed per run, each stage made from the one before.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("baseline", "baseline", "torch"),
    ("distill", "distill", "torch"),
    ("prune", "prune", "torch"),
    ("int8", "quantize", "onnx"),
    ("export", "export", "onnx"),
)
RECIPES = ("resnet-edge", "mobilenet-int8", "bert-tiny", "vit-small")  # two versions each
ALIASES = ("prod", "staging", "canary", "edge-prod", "edge-canary")
EVALUATIONS = (  # per variant, as many as the event budget allows, in this order
    "accuracy",
    "paired",
    "size",
    "fidelity",
    "calibration",
    "latency",
    "classes",
    "fairness",
)
# A gate's rule as a recipe declares it and the catalog records it (`BoundGate`, dumped).
RULE = {
    "rule": "bound",
    "metric": "paired.accuracy_difference",
    "min": -0.02,
    "owner": "ml-platform",
}
ALIAS_EVERY = 10  # one alias move after every 10th run
TEST_SAMPLES = 500  # predictions stored by each synthetic accuracy result
Row = tuple[type[Any], dict[str, Any]]


# --- synthesis ---------------------------------------------------------------------------------


def _estimate(value: float, n: int = TEST_SAMPLES, method: str = "wilson") -> Estimate:
    return Estimate(estimate=value, ci_low=value - 0.02, ci_high=value + 0.02, n=n, method=method)


def _templates() -> dict[str, dict[str, Any]]:
    """One valid evaluator result of each kind, as JSON; synthesis varies its numbers."""
    est = _estimate
    bins = [
        ReliabilityBin(
            lower=k / 10, upper=(k + 1) / 10, count=50, confidence=k / 10, accuracy=k / 10
        )
        for k in range(10)
    ]
    results = [
        AccuracyResult(
            accuracy=est(0.9), correct=450, predictions=[k % 10 for k in range(TEST_SAMPLES)]
        ),
        PairedResult(
            b=12,
            c=9,
            n=TEST_SAMPLES,
            baseline_accuracy=0.91,
            candidate_accuracy=0.9,
            difference=est(-0.01, method="tango"),
            mcnemar_pvalue=0.66,
            mcnemar_midp=0.6,
        ),
        SizeResult(
            reference="baseline",
            bytes=Estimate.exact(4_000_000, unit="B", higher_is_better=False),
            ratio=Estimate.exact(0.25),
            params=Estimate.exact(1_000_000),
            nonzero_params=Estimate.exact(500_000),
            macs=Estimate.exact(30_000_000),
            counts_from="torch",
        ),
        FidelityResult(
            against="parent",
            reference="prune",
            agreement=est(0.97),
            kl_divergence=est(0.01, method="bootstrap"),
            negative_flip_rate=est(0.01),
            positive_flip_rate=est(0.008),
        ),
        CalibrationResult(
            bins=10,
            measures={m: est(0.03, method="bootstrap") for m in ("ece", "mce", "brier", "nll")},
            changes={m: est(0.001, method="bootstrap") for m in ("ece", "brier")},
            baseline_measures={"ece": 0.03, "mce": 0.1, "brier": 0.12, "nll": 0.3},
            reliability=bins,
        ),
        LatencyResult(
            runner="onnxruntime",
            baseline_runner="torch",
            threads={"intra_op": 1, "inter_op": 1},
            warmup=20,
            repeats=200,
            timer_overhead_ns=900.0,
            batches=[
                LatencyBatch(
                    batch_size=b,
                    quantiles_ms={
                        q: est(1.5 * b, n=200, method="bootstrap") for q in ("p50", "p95")
                    },
                    speedup_p50=est(2.1, n=200, method="bootstrap"),
                    throughput=est(600.0, n=200, method="bootstrap"),
                )
                for b in (1, 8)
            ],
        ),
        ClassesResult(
            alpha=0.05,
            classes=[
                ClassRow(label=k, name=f"class-{k}", n=50, recall=est(0.9, n=50)) for k in range(10)
            ],
            most_affected=["class-3", "class-7"],
            worst_recall=est(0.82, n=50),
            worst_recall_drop=est(0.04, n=50, method="newcombe"),
        ),
        FairnessResult(
            task="multiclass",
            groups=[
                GroupRow(group=g, name=f"group-{g}", n=166, accuracy=est(0.9, n=166))
                for g in range(3)
            ],
            worst_group="group-1",
            worst_group_accuracy=est(0.88, n=166),
            accuracy_gap=est(0.03, method="bootstrap"),
            demographic_parity_difference=est(0.02, method="bootstrap"),
            equalized_odds_difference=est(0.04, method="bootstrap"),
            equal_opportunity_difference=est(0.03, method="bootstrap"),
        ),
    ]
    # As the catalog stores them (`chain.compact`): the fields at their default left out.
    dumped = [compact(r) for r in results]
    return {d["kind"]: d for d in dumped}


MARK = 1234.5678125  # a number no template holds
PRIMARY = {  # the estimate of each template that synthesis varies
    "accuracy": "accuracy",
    "paired": "difference",
    "size": "ratio",
    "fidelity": "agreement",
    "calibration": None,
    "latency": None,
    "classes": "worst_recall",
    "fairness": "worst_group_accuracy",
}


@dataclass
class Synthesis:
    """What was appended: counts per table, seconds, the ids the timings draw from."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    run_ids: list[str] = field(default_factory=list)
    runs_of_recipe: dict[str, int] = field(default_factory=dict)
    last_artifacts: list[str] = field(default_factory=list)  # the export stage's, per run
    recipe_sha256: str = ""
    gates: int = 0  # the synthetic recipes' gates: gate-0 … gate-(gates - 1)


class Synthesizer:
    """The rows of a seeded catalog of `variants` variants and exactly `events` events."""

    def __init__(self, variants: int, events: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.runs = variants // len(STAGES)
        self.variants = variants
        self.events = events
        # Each kind's canonical text, cut where the varied numbers go (json writes a float as
        # its repr), so that a row costs a string join instead of a json.dumps.
        self.texts: dict[str, list[str]] = {}
        self.fixed: dict[str, str] = {}  # deflated texts of the kinds that do not vary
        for kind, template in _templates().items():
            key = PRIMARY[kind]
            if key is None:
                self.texts[kind] = [document(template)]
                continue
            marked = {**template, key: {**template[key], "ci_low": -MARK, "estimate": MARK}}
            head, rest = document(marked).split(repr(-MARK))  # ci_low sorts before estimate
            middle, tail = rest.split(repr(MARK))
            self.texts[kind] = [head, middle, tail]
            shown = {**template, key: {**template[key], "ci_low": 0.9 - 0.02, "estimate": 0.9}}
            assert self._evaluation(kind, 0.9) == document(shown), kind
        self.alias_moves = self.runs // ALIAS_EVERY
        recipes = len(RECIPES) * 2  # two versions each
        # Every run: its row, its seed, its variants, its end; then evaluations and gate
        # decisions share what is left of the budget, as evenly as the runs allow.
        fixed = SCHEMA_VERSION + recipes + self.runs * 3 + variants + self.alias_moves
        self.extra = events - fixed
        if self.extra < 0:
            raise SystemExit(
                f"--events {events:,} is too few for --variants {variants:,}: at least "
                f"{fixed:,} (the migrations, {recipes} recipes, each run's row, seed "
                f"and end, the variants and {self.alias_moves:,} alias moves)"
            )
        capacity = self.runs * len(STAGES) * len(EVALUATIONS)
        self.evaluations = min(self.extra - self.extra // 7, capacity)
        self.decisions = self.extra - self.evaluations
        # The recipes' gates are those the runs with the most decisions are judged by (`gates`
        # in `run_rows`): such a run, every gate decided and passed, is approved and may be
        # promoted; a run with fewer is not judged by every gate, as a stopped run is not.
        most = self._share(self.decisions, self.runs, 0)
        self.gates = (most + 1) // 2
        self.recipes = [
            (
                name,
                version,
                hashlib.sha256(recipe_text(name, version, self.gates).encode()).hexdigest(),
            )
            for name in RECIPES
            for version in (1, 2)
        ]  # (name, version, sha256)
        self.environment = self._environment()
        self.when = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)

    def _hex(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    @staticmethod
    def _share(total: int, parts: int, index: int) -> int:
        return total // parts + (1 if index < total % parts else 0)

    def _environment(self) -> dict[str, Any]:
        packages = {
            "torch": "2.5.1",
            "numpy": "2.1.3",
            "onnx": "1.17.0",
            "onnxruntime": "1.20.1",
            "scipy": "1.14.1",
            "pydantic": "2.10.3",
            "sqlalchemy": "2.0.36",
            "compressgate": "0.1.0",
        }
        fingerprint = {
            "python": "3.11.7",
            "implementation": "CPython",
            "machine": "x86_64",
            "threads": 8,
            "packages": packages,
        }
        return {
            "fingerprint": fingerprint,
            "fingerprint_sha256": self._hex(),
            "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
            "cuda": None,
        }

    def recipe_rows(self) -> list[Row]:
        rows: list[Row] = []
        for name, version, sha in self.recipes:
            signers = ["ml-platform", "model-owner"]
            content = recipe_text(name, version, self.gates)
            envelope = document(
                {
                    "payload": content.encode().hex(),
                    "payloadType": "application/vnd.compressgate.recipe+yaml",
                    "signatures": [
                        {"keyid": self._hex()[:16], "sig": self._hex()} for _ in signers
                    ],
                }
            )
            rows.append(
                (
                    RecipeRow,
                    {
                        "sha256": sha,
                        "name": name,
                        "version": version,
                        "path": f"recipes/{name}.yaml",
                        "signers": document(signers),
                        "content": content,
                        "envelope": envelope,
                        "recorded_at": self._stamp(self.when),
                        "actor": "ci",
                    },
                )
            )
        return rows

    @staticmethod
    def _stamp(at: datetime) -> str:
        return at.isoformat(timespec="microseconds").replace("+00:00", "Z")

    def _evaluation(self, kind: str, quality: float) -> str:
        """The kind's template with this variant's estimate: what `document` would give."""
        parts = self.texts[kind]
        if len(parts) == 1:
            return parts[0]
        return f"{parts[0]}{quality - 0.02!r}{parts[1]}{quality!r}{parts[2]}"

    def _stored_evaluation(self, kind: str, quality: float) -> str:
        """The evaluation as the catalog stores it (`chain.stored`), deflated once per kind
        whose text does not vary."""
        if len(self.texts[kind]) == 1:
            if kind not in self.fixed:
                self.fixed[kind] = deflated(self.texts[kind][0])
            return self.fixed[kind]
        return deflated(self._evaluation(kind, quality))

    def _metrics(self, quality: float, size: int) -> str:
        r = self.rng
        metrics = {
            "accuracy": _estimate(quality),
            "paired.accuracy_difference": _estimate(quality - 0.91, method="tango"),
            "fidelity.agreement": _estimate(min(1.0, quality + 0.06)),
            "calibration.ece": _estimate(r.uniform(0.01, 0.06), method="bootstrap"),
            "latency.batch_1.p50_ms": _estimate(r.uniform(0.5, 4.0), n=200, method="bootstrap"),
            "size.bytes": Estimate.exact(size, unit="B", higher_is_better=False),
        }
        # The latency evaluator names its first batch size's figures twice.
        metrics["latency.p50_ms"] = metrics["latency.batch_1.p50_ms"]
        return stored(pack_metrics(metrics))

    def run_rows(self, index: int, synthesis: Synthesis) -> Iterator[Row]:
        """One run, in the order the executor appends it."""
        r = self.rng
        self.when += timedelta(minutes=r.uniform(5, 40))
        run_id = f"run-{self.when:%Y%m%dT%H%M%SZ}-{r.getrandbits(24):06x}"
        name, version, recipe_sha = self.recipes[r.randrange(len(self.recipes))]
        synthesis.run_ids.append(run_id)
        synthesis.runs_of_recipe[name] = synthesis.runs_of_recipe.get(name, 0) + 1
        at = self.when
        yield (
            RunRow,
            {
                "run_id": run_id,
                "recipe_sha256": recipe_sha,
                "recipe_name": name,
                "recipe_version": version,
                "recipe_path": f"recipes/{name}.yaml",
                "signers": document(["ml-platform", "model-owner"]),
                "seeds": document([0]),
                "workspace": f"/srv/compressgate/{name}",
                "started_at": self._stamp(at),
                "environment": stored(self.environment),
                "environment_sha256": self.environment["fingerprint_sha256"],
                "lock_sha256": self.environment["fingerprint_sha256"],
                "actor": r.choice(("ci", "alice", "bob", "carol")),
            },
        )
        data = {split: self._hex() for split in ("train", "calibration", "test")}
        yield (
            RunSeedRow,
            {"id": f"{run_id}/0", "run_id": run_id, "seed": 0, "data": stored(data)},
        )
        evaluations = self._share(self.evaluations, self.runs, index)
        decisions = self._share(self.decisions, self.runs, index)
        parent: str | None = None
        size = r.randrange(20_000_000, 90_000_000)
        quality = r.uniform(0.88, 0.94)
        stage_ids: list[tuple[str, str, str]] = []
        for position, (stage, kind, fmt) in enumerate(STAGES):
            at += timedelta(seconds=r.uniform(30, 600))
            variant_id = f"{run_id}/0/{stage}"
            # The export's file is real (`export_bytes`): the bench stores the ones aliases
            # point at, which `alias resolve` hashes.
            content = export_bytes(variant_id) if stage == "export" else None
            artifact = self._hex() if content is None else hashlib.sha256(content).hexdigest()
            if position:
                size = int(size * r.uniform(0.25, 0.8))
                quality -= r.uniform(0.0, 0.01)
            name_of = "model.onnx" if fmt == "onnx" else "model.pt"
            files = [{"name": name_of, "sha256": self._hex(), "size": size}]
            if content is not None:
                files = [{"name": name_of, "sha256": artifact, "size": len(content)}]
            details: dict[str, Any] = {"device": "cpu"}
            if stage == "prune":
                details["sparsity"] = 0.5
            if fmt == "onnx":
                details["opset"] = 18
            yield (
                VariantRow,
                {
                    "id": variant_id,
                    "run_id": run_id,
                    "seed": 0,
                    "stage": stage,
                    "kind": kind,
                    "format": fmt,
                    "artifact_sha256": artifact,
                    "parent_sha256": parent,
                    "spec_sha256": self._hex(),
                    "spec": stored({"name": stage, "kind": kind, "epochs": 3, "lr": 0.001}),
                    "recipe_sha256": recipe_sha,
                    "cache_key": self._hex(),
                    "cached": r.random() < 0.2,
                    "size_bytes": size,
                    "files": stored(files),
                    "params": size // 4,
                    "nonzero_params": size // 8,
                    "macs": size * 8,
                    "metrics": self._metrics(quality, size),
                    "details": stored(details),
                    "warnings": document([]),
                    "evaluation_key": self._hex(),
                    "seconds": r.uniform(1, 600),
                    "eval_seconds": r.uniform(0.5, 30),
                    "recorded_at": self._stamp(at),
                },
            )
            for kind_index in range(self._share(evaluations, len(STAGES), position)):
                kind_name = EVALUATIONS[kind_index]
                yield (
                    EvaluationRow,
                    {
                        "id": f"{variant_id}/{kind_name}",
                        "variant_id": variant_id,
                        "kind": kind_name,
                        "result": self._stored_evaluation(kind_name, quality),
                    },
                )
            stage_ids.append((variant_id, stage, artifact))
            parent = artifact
        # The run's gates as the executor records them at its end: each seed's judgement
        # (`gate_decisions`, one seed here) and the gate's decision over the seeds
        # (`gate_verdicts`, what the review reads), the last gate's decision left out when the
        # run's share of events is odd.
        verdicts = []
        decided = []
        gates = (decisions + 1) // 2
        for gate in range(gates):
            variant_id, stage, artifact = stage_ids[gate_stage(gate)]
            verdict = "pass" if r.random() < 0.9 else "fail"
            verdicts.append(verdict)
            estimate = quality - 0.91
            judged = {
                "verdict": verdict,
                "estimate": estimate,
                "ci_low": estimate - 0.01,
                "ci_high": estimate + 0.01,
                "n": TEST_SAMPLES,
                "threshold": -0.02,
                "pvalue": r.random(),
                "note": "",
            }
            if gate < decisions - gates:
                decided.append((gate, stage, variant_id, artifact, judged))
            yield (
                GateJudgementRow,
                {
                    "id": f"{run_id}/0/gate-{gate}",
                    "run_id": run_id,
                    "seed": 0,
                    "gate": f"gate-{gate}",
                    "variant_id": variant_id,
                    "stage": stage,
                    "artifact_sha256": artifact,
                    "metric": "paired.accuracy_difference",
                    "rule": stored(RULE | {"name": f"gate-{gate}"}),
                    "estimate": estimate,
                    "ci_low": estimate - 0.01,
                    "ci_high": estimate + 0.01,
                    "n": TEST_SAMPLES,
                    "threshold": -0.02,
                    "pvalue": r.random(),
                    "verdict": verdict,
                    "owner": "ml-platform",
                    "evidence_sha256": self._hex(),
                    "note": "",
                    "decided_at": self._stamp(at),
                },
            )
        for gate, stage, variant_id, artifact, judged in decided:
            seed = {**judged, "seed": 0, "variant_id": variant_id, "artifact_sha256": artifact}
            yield (
                GateDecisionRow,
                {
                    "id": f"{run_id}/gate-{gate}",
                    "run_id": run_id,
                    "gate": f"gate-{gate}",
                    "owner": "ml-platform",
                    "metric": "paired.accuracy_difference",
                    "stage": stage,
                    "policy": "every",
                    "approval": "none",
                    "rule": stored(RULE | {"name": f"gate-{gate}"}),
                    **judged,
                    "seeds": stored([seed]),
                    "power": stored(None),
                    "evidence_sha256": self._hex(),
                    "decided_at": self._stamp(at),
                },
            )
        synthesis.last_artifacts.append(stage_ids[-1][2])
        aggregate = {
            stage: pack_metrics(
                {
                    "accuracy": SeedAggregate(
                        mean=quality, ci_low=quality, ci_high=quality, seeds=1, sd=0.0, spread=0.0
                    )
                }
            )
            for _, stage, _ in stage_ids
        }
        total = (at - self.when).total_seconds()
        yield (
            RunEndRow,
            {
                "run_id": run_id,
                "status": "failed" if "fail" in verdicts else "succeeded",
                "finished_at": self._stamp(at),
                "error": None,
                "timing": stored(
                    {
                        "total_seconds": total,
                        "compute_seconds": total * 0.97,
                        "overhead_seconds": total * 0.03,
                        "overhead_fraction": 0.03,
                    }
                ),
                "aggregate": stored(aggregate),
                "exemplars": stored({}),
                "failed_stages": stored([]),
            },
        )

    def rows(self, synthesis: Synthesis) -> Iterator[Row]:
        """Every row of the catalog, oldest first."""
        yield from self.recipe_rows()
        current: dict[str, tuple[str, str] | None] = dict.fromkeys(ALIASES)
        history: dict[str, list[tuple[str, str]]] = {a: [] for a in ALIASES}
        for index in range(self.runs):
            yield from self.run_rows(index, synthesis)
            if (index + 1) % ALIAS_EVERY:
                continue
            alias = ALIASES[(index // ALIAS_EVERY) % len(ALIASES)]
            previous = current[alias]
            if previous is not None and history[alias] and self.rng.random() < 0.1:
                target, action = history[alias].pop(), "rollback"
            else:
                recent = self.rng.randrange(max(0, index - 50), index + 1)
                run_id = synthesis.run_ids[recent]
                target = (f"{run_id}/0/export", synthesis.last_artifacts[recent])
                action = "promote"
                if previous is not None:
                    history[alias].append(previous)
            current[alias] = target
            yield (
                AliasMoveRow,
                {
                    "alias": alias,
                    "variant_id": target[0],
                    "artifact_sha256": target[1],
                    "previous_variant_id": previous[0] if previous else None,
                    "action": action,
                    "actor": "oncall",
                    "reason": f"{action} after review",
                    "moved_at": self._stamp(self.when),
                },
            )


def gate_stage(gate: int) -> int:
    """The index in `STAGES` of the stage gate-`gate` judges: every stage after the baseline
    in turn."""
    return 1 + gate % (len(STAGES) - 1)


def recipe_text(name: str, version: int, gates: int) -> str:
    """A synthetic recipe's text: the reference recipe under another name and version (a
    command that reads a run's review parses it), its gates those synthesis judges: gate-K
    after stage 1 + K mod 4, the bound of `RULE`, no sign-off required."""
    text = (Path(__file__).resolve().parents[1] / "recipes/examples/digits.yaml").read_text()
    text = text.replace("name: digits-cnn-compact", f"name: {name}", 1)
    text = text.replace("version: 1", f"version: {version}", 1)
    head = text[: text.index("\ngates:")]
    lines = ["gates:"]
    for gate in range(gates):
        stage = STAGES[gate_stage(gate)][0]
        lines += [
            f"  - name: gate-{gate}",
            f"    owner: {RULE['owner']}",
            f"    after: {stage}",
            f"    metric: {RULE['metric']}",
            f"    rule: {RULE['rule']}",
            f"    min: {RULE['min']}",
        ]
    return head + "\n" + "\n".join(lines) + "\n"


def export_bytes(variant_id: str) -> bytes:
    """The file of a synthetic export variant."""
    return f"compressgate bench export {variant_id}\n".encode()


def synthesize(
    catalog: Catalog,
    variants: int,
    events: int,
    seed: int,
    batch: int,
    progress: bool,
    at: tuple[int, Callable[[], None]] | None = None,
) -> Synthesis:
    """Append the seeded catalog; with `at` = (events, call), `call()` once the chain first
    holds that many events (between two appends)."""
    synthesizer = Synthesizer(variants, events, seed)
    synthesis = Synthesis(recipe_sha256=synthesizer.recipes[0][2], gates=synthesizer.gates)
    pending: list[Row] = []
    appended = 0
    started = time.perf_counter()

    def flush() -> None:
        nonlocal appended, at
        catalog.append(pending)
        for model, _ in pending:
            name = str(model.__tablename__)
            synthesis.counts[name] = synthesis.counts.get(name, 0) + 1
        appended += len(pending)
        pending.clear()
        if at is not None and appended + SCHEMA_VERSION >= at[0]:
            at[1]()
            at = None
        if progress:
            rate = appended / (time.perf_counter() - started)
            print(
                f"\r  synthesising: {appended:,} / {events - SCHEMA_VERSION:,} rows "
                f"({rate:,.0f}/s)",
                end="",
                file=sys.stderr,
                flush=True,
            )

    for row in synthesizer.rows(synthesis):
        pending.append(row)
        # Flush only between runs (a run's end closes it), so a batch holds whole runs; and
        # as soon as the chain reaches `at`'s mark.
        due = len(pending) >= batch or (
            at is not None and appended + len(pending) + SCHEMA_VERSION >= at[0]
        )
        if due and row[0] in (RunEndRow, AliasMoveRow):
            flush()
    if pending:
        flush()
    if progress:
        print(file=sys.stderr)
    synthesis.seconds = time.perf_counter() - started
    return synthesis


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Figure:
    operation: str
    unit: str  # "ms" (lower is better) or "events/s" (higher is better)
    median: float
    p95: float  # ms: the 95th percentile; events/s: the slowest run
    goal: float | None  # None: no target on this backend
    samples: int
    note: str = ""

    @property
    def ok(self) -> bool | None:
        if self.goal is None:
            return None
        return self.median >= self.goal if self.unit == "events/s" else self.median <= self.goal


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timed(
    name: str,
    goal: float | None,
    call: Callable[[int], Any],
    repeat: int,
    warmup: int,
    note: str = "",
) -> Figure:
    """`call(i)` `warmup` times untimed, then `repeat` times timed: median and p95 in ms."""
    for i in range(warmup):
        call(i)
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        call(warmup + i)
        times.append((time.perf_counter() - start) * 1e3)
    return Figure(name, "ms", statistics.median(times), _p95(times), goal, repeat, note)


def stage_record(
    rng: random.Random, seed: int, name: str, parent: str | None, evaluation: bool
) -> tuple[StageRecord, dict[str, Any]]:
    size = rng.randrange(1_000_000, 50_000_000)
    artifact = f"{rng.getrandbits(256):064x}"
    evaluations: dict[str, Any] = {}
    if evaluation:
        evaluations["accuracy"] = AccuracyResult(
            accuracy=_estimate(0.9),
            correct=450,
            predictions=[k % 10 for k in range(TEST_SAMPLES)],
        )
    record = StageRecord(
        seed=seed,
        name=name,
        kind="prune",
        status="done",
        format="torch",
        artifact_sha256=artifact,
        parent_sha256=parent,
        spec_sha256=f"{rng.getrandbits(256):064x}",
        size_bytes=size,
        files=[{"name": "model.pt", "sha256": f"{rng.getrandbits(256):064x}", "size": size}],
        params=size // 4,
        nonzero_params=size // 8,
        metrics={
            "accuracy": _estimate(0.9),
            "paired.accuracy_difference": _estimate(-0.01, method="tango"),
            "size.bytes": Estimate.exact(size, unit="B", higher_is_better=False),
        },
        evaluations=evaluations,
        details={"sparsity": 0.5},
        seconds=12.5,
        eval_seconds=1.5,
    )
    return record, {"name": name, "kind": "prune", "method": "magnitude", "sparsity": 0.5}


def measure(
    catalog: Catalog, synthesis: Synthesis, repeat: int, warmup: int, verify_runs: int, seed: int
) -> list[Figure]:
    rng = random.Random(seed + 1)
    runs = synthesis.run_ids
    figures: list[Figure] = []

    def alias(_: int) -> None:
        assert catalog.alias(rng.choice(ALIASES)) is not None

    figures.append(timed("alias resolve", GOAL_ALIAS_MS, alias, repeat, warmup))

    def lineage_by_id(_: int) -> None:
        chain = catalog.lineage(f"{rng.choice(runs)}/0/{STAGES[-1][0]}")
        assert len(chain) == len(STAGES), chain

    figures.append(
        timed(
            "lineage (by variant id)",
            GOAL_LINEAGE_MS,
            lineage_by_id,
            repeat,
            warmup,
            note=f"{len(STAGES)} variants",
        )
    )

    def lineage_by_sha(_: int) -> None:
        chain = catalog.lineage(rng.choice(synthesis.last_artifacts)[:12])
        assert len(chain) == len(STAGES), chain

    figures.append(
        timed(
            "lineage (by sha256 prefix)",
            GOAL_LINEAGE_MS,
            lineage_by_sha,
            repeat,
            warmup,
            note="12 hex digits",
        )
    )

    def first_page(_: int) -> None:
        assert len(catalog.runs(limit=PAGE)) == min(PAGE, len(runs))

    figures.append(timed("list page (newest)", GOAL_PAGE_MS, first_page, repeat, warmup))

    def any_page(_: int) -> None:
        offset = rng.randrange(max(1, len(runs) - PAGE))
        assert catalog.runs(limit=PAGE, offset=offset)

    figures.append(
        timed(
            "list page (random offset)",
            GOAL_PAGE_MS,
            any_page,
            repeat,
            warmup,
            note=f"offset 0…{len(runs) - PAGE:,}",
        )
    )
    recipe, count = max(synthesis.runs_of_recipe.items(), key=lambda kv: kv[1])

    def recipe_page(_: int) -> None:
        offset = rng.randrange(max(1, count - PAGE))
        assert catalog.runs(recipe=recipe, limit=PAGE, offset=offset)

    figures.append(
        timed(
            "list page (one recipe, random offset)",
            GOAL_PAGE_MS,
            recipe_page,
            repeat,
            warmup,
            note=f"{count:,} runs of {recipe}",
        )
    )

    rates = []
    for _ in range(verify_runs):
        start = time.perf_counter()
        head = catalog.verify_chain()
        rates.append(head.size / (time.perf_counter() - start))
    figures.append(
        Figure(
            "audit verify (hash chain)",
            "events/s",
            statistics.median(rates),
            min(rates),
            GOAL_VERIFY_EVENTS_S,
            verify_runs,
            note=f"{head.size:,} events",
        )
    )

    # Registering: new stages of a new run, one committed transaction each.
    run_id = "run-29991231T235959Z-bench0"
    catalog.append(
        [
            (
                RunRow,
                {
                    "run_id": run_id,
                    "recipe_sha256": synthesis.recipe_sha256,
                    "recipe_name": "bench",
                    "recipe_version": 1,
                    "recipe_path": "bench.yaml",
                    "signers": document([]),
                    "seeds": document([0, 1]),
                    "workspace": "/tmp/bench",
                    "started_at": "2999-12-31T23:59:59.000000Z",
                    "environment": document({}),
                    "environment_sha256": "",
                    "lock_sha256": "",
                    "actor": "bench",
                },
            )
        ]
    )
    for seed, evaluation in ((0, False), (1, True)):
        parent: list[str | None] = [None]
        records = [
            stage_record(rng, seed, f"step-{i:04d}", None, evaluation)
            for i in range(warmup + repeat)
        ]

        def register(i: int, records: list[Any] = records, parent: list[Any] = parent) -> None:
            record, spec = records[i]
            record.parent_sha256 = parent[0]
            catalog.record_stage(run_id, synthesis.recipe_sha256, record, spec)
            parent[0] = record.artifact_sha256

        figures.append(
            timed(
                "register one variant" + (" + 1 evaluation" if evaluation else ""),
                GOAL_REGISTER_MS if catalog.dialect == "sqlite" else None,  # a SQLite target
                register,
                repeat,
                warmup,
                note="committed" + (", 500 predictions" if evaluation else ""),
            )
        )

    # Moving an alias: without a release (the unsigned regime), and with the signed release a
    # releaser's `promote` records under a trust policy (one more row in the same transaction).
    from compressgate.registry.governance.release import Move, release_envelope
    from compressgate.registry.kernel.keys import PrivateKey

    targets = [catalog.variant(f"{run_id}/0/step-{i:04d}") for i in range(warmup + repeat)]
    releaser = PrivateKey.generate()
    policy = {  # a policy row for the releases to name (its content is not judged here)
        "version": 1,
        "sha256": "0" * 64,
        "content": "apiVersion: compressgate/v1\nkind: Trust\n",
        "envelope": document({"payload": "bench"}),
        "recorded_at": "2999-12-31T23:59:59.000000Z",
        "signers": document(["root-a", "root-b"]),
    }
    catalog.append([(PolicyRow, policy)])
    for signed in (False, True):
        alias = "bench-signed" if signed else "bench-unsigned"

        def move(i: int, alias: str = alias, signed: bool = signed) -> None:
            target = targets[i]
            release = None
            if signed:
                head = catalog.head()
                envelope = release_envelope(
                    Move(alias, "promote", target.id, target.artifact_sha256, run_id,
                         synthesis.recipe_sha256, None),
                    releaser, owner="release-eng", reason="bench",
                    head=(head.size, head.sha256), policy=(1, "0" * 64),
                )  # fmt: skip
                release = {
                    "owner": "release-eng",
                    "keyid": releaser.public.keyid,
                    "policy_version": 1,
                    "envelope": envelope.to_json().decode("utf-8"),
                }
            catalog.move_alias(alias, target, action="promote", reason="bench", release=release)

        figures.append(
            timed(
                "move an alias" + (" + its signed release" if signed else ""),
                None,
                move,
                repeat,
                warmup,
                note="committed" + (", signed with Ed25519" if signed else ""),
            )
        )
    return figures


# --- commands ----------------------------------------------------------------------------------


@dataclass
class Command:
    """One command run as a person runs it: a fresh process of the console script."""

    operation: str
    argv: list[str]  # after `compressgate`, the workspace and catalog options left out
    cold: float  # s: its first run on this catalog
    warm: float  # s: the median of the runs after it
    worst: float  # s: the slowest run after it
    goal: float | None  # s, judged on `cold`
    runs: int  # after the first
    note: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.goal is None else self.cold <= self.goal


def console_script() -> str:
    found = Path(sys.executable).parent / "compressgate"
    if not found.is_file():
        raise SystemExit(f"no console script at {found}: install compressgate (make venv)")
    return str(found)


def run_command(argv: list[str], where: list[str], codes: tuple[int, ...] = (0,)) -> float:
    """Run `compressgate ARGV WHERE`; its wall time in s (exit codes other than `codes` stop
    the bench, with the command's error)."""
    start = time.perf_counter()
    done = subprocess.run(
        [console_script(), *argv, *where], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode not in codes:
        raise SystemExit(
            f"compressgate {' '.join(argv)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
        )
    return seconds


def floor_imports(url: str) -> str:
    """What every catalog command imports before any of compressgate's own code runs: SQLModel
    (SQLAlchemy's ORM, pydantic) and the catalog's dialect with its driver."""
    driver = "sqlalchemy.dialects.sqlite, sqlite3"
    if url.startswith("postgresql"):
        driver = "sqlalchemy.dialects.postgresql.psycopg, psycopg"
    return f"sqlmodel, {driver}"


def run_floor(modules: str) -> float:
    """`python -c 'import MODULES'` in a fresh process, as the console script starts (its
    garbage-collection threshold, no teardown): the wall time in s."""
    code = f"import gc; gc.set_threshold(20000, 20, 20); import {modules}; import os; os._exit(0)"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def time_command(
    operation: str,
    argv: list[str],
    where: list[str],
    runs: int,
    goal: float | None,
    note: str = "",
    codes: tuple[int, ...] = (0,),
    run: Callable[[], float] | None = None,
) -> Command:
    """The first run of `argv` (or of `run`), then `runs` more."""
    once = run or (lambda: run_command(argv, where, codes))
    cold = once()
    later = [once() for _ in range(runs)]
    return Command(
        operation,
        argv,
        cold,
        statistics.median(later) if later else cold,
        max(later) if later else cold,
        goal,
        runs,
        note,
    )


def audit_rate(argv: list[str], where: list[str]) -> tuple[float, float, int]:
    """`audit verify ARGV --json` once: (wall s, printed rate, events checked)."""
    start = time.perf_counter()
    done = subprocess.run(
        [console_script(), "audit", "verify", *argv, *where, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"audit verify {' '.join(argv)} exited {done.returncode}:\n{done.stdout}")
    found = json.loads(done.stdout)
    return wall, float(found["events_per_second"]), int(found["checked_events"])


@dataclass
class Keys:
    """An auditor's key and the trust file naming it, for signing and checking checkpoints."""

    key: Path
    trust: Path


def auditor(folder: Path) -> Keys:
    from compressgate.recipes.trust import add_owner_key
    from compressgate.registry.kernel.keys import generate_keypair

    private, _, public = generate_keypair("audit-team", folder / "keys")
    trust = folder / "trust.yaml"
    add_owner_key(trust, "audit-team", public, ("auditor",))
    return Keys(private, trust)


def sign_checkpoint(where: list[str], keys: Keys, out: Path) -> None:
    """`audit checkpoint`, as an auditor runs it: the chain verified, its head signed."""
    run_command(["audit", "checkpoint", "--key", str(keys.key), "-o", str(out)], where)


def store_targets(catalog: Catalog, folder: Path) -> int:
    """Put in the workspace's store the file of every variant an alias points at."""
    from compressgate.registry.catalog.store import ArtifactStore

    store = ArtifactStore(folder)
    count = 0
    for name in catalog.aliases():
        move = catalog.alias(name)
        assert move is not None
        content = export_bytes(move.variant_id)
        path = store.blob_path(hashlib.sha256(content).hexdigest())
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            count += 1
    return count


def approved_variants(catalog: Catalog, synthesis: Synthesis, count: int) -> list[str]:
    """`count` variants `promote` takes (governance's own check, `gate_status`): the stage of
    the last gate of runs from the middle of the catalog on, whose every gate passed."""
    from compressgate.registry.governance.aliases import gate_status

    stage = STAGES[gate_stage(synthesis.gates - 1)][0]
    found: list[str] = []
    middle = len(synthesis.run_ids) // 2
    for run_id in synthesis.run_ids[middle:] + synthesis.run_ids[:middle]:
        variant = catalog.variant(f"{run_id}/0/{stage}")
        if gate_status(catalog, variant, None).passed:
            found.append(variant.id)
            if len(found) == count:
                return found
    raise SystemExit(f"no {count} promotable variants in the synthetic catalog")


def measure_commands(
    catalog: Catalog,
    synthesis: Synthesis,
    where: list[str],
    checkpoint: Path,
    keys: Keys,
    runs: int,
    audit_runs: int,
) -> list[Command]:
    """The commands people wait for, each in fresh processes; see the module docstring."""
    alias = ALIASES[0]
    move = catalog.alias(alias)
    assert move is not None, f"no alias {alias} in the synthetic catalog"
    run_id = move.variant_id.split("/")[0]
    size = catalog.head().size
    commands = []
    hashes = ["--skip-meaning", "--skip-artifacts"]
    for name, extra, goal in (
        ("audit verify (every event)", hashes, GOAL_AUDIT_S),
        (
            "audit verify --since CHECKPOINT",
            [*hashes, "--since", str(checkpoint), "--trust", str(keys.trust)],
            GOAL_SINCE_S,
        ),
    ):
        cold_wall, cold_rate, checked = audit_rate(extra, where)
        later = [audit_rate(extra, where) for _ in range(audit_runs)]
        walls = [w for w, _, _ in later] or [cold_wall]
        rates = [r for _, r, _ in later] or [cold_rate]
        commands.append(
            Command(
                name,
                ["audit", "verify", *extra],
                cold_wall,
                statistics.median(walls),
                max(walls),
                goal,
                audit_runs,
                note=f"{checked:,} of {size:,} events; printed {statistics.median(rates):,.0f} "
                f"events/s, wall {checked / statistics.median(walls):,.0f}",
            )
        )
    variant = f"{synthesis.run_ids[len(synthesis.run_ids) // 2]}/0/export"
    for name, argv, goal, note, codes in (
        ("alias history", ["alias", "history", alias], GOAL_COLD_S, "", (0,)),
        ("alias resolve", ["alias", "resolve", alias], GOAL_COLD_S, "the file hashed", (0,)),
        ("catalog list", ["catalog", "list"], GOAL_COLD_S, f"newest {PAGE}", (0,)),
        ("catalog lineage", ["catalog", "lineage", variant], None, "5 variants", (0,)),
        # Exit 1: the run's review is rejected (a synthetic gate failed), an answer too.
        ("review status", ["review", "status", run_id], None, "one run", (0, 1)),
        ("--help", ["--help"], None, "for reference", (0,)),
    ):
        options = [] if argv == ["--help"] else where
        commands.append(time_command(name, argv, options, runs, goal, note, codes))
    # A real move: `promote` of a variant whose run is approved (every recipe gate decided and
    # passed), alternately to two such variants, so that each run moves the alias.
    targets = approved_variants(catalog, synthesis, 2)
    turn = itertools.cycle(targets)

    def promote() -> float:
        target = next(turn)
        argv = ["promote", target, "--alias", "bench-release", "--actor", "bench"]
        return run_command([*argv, "--reason", "bench/catalog.py: timing promote"], where)

    note = f"a move, alternately to {' and '.join(targets)}"
    commands.append(time_command("promote", ["promote"], where, runs, None, note, run=promote))
    # The floor under every catalog command: its libraries imported, nothing of ours run.
    modules = floor_imports(where[where.index("--catalog") + 1])
    commands.append(
        time_command(
            "the libraries alone",
            ["python", "-c", f"import {modules}"],
            [],
            runs,
            None,
            f"import {modules}",
            run=lambda: run_floor(modules),
        )
    )
    return commands


# --- against MLflow's model registry (--against-mlflow) ------------------------------------------

# Each operation both registries offer: (ours, as `measure` names it; MLflow's, what it times).
SIDE_BY_SIDE = (
    ("alias resolve", "get_model_version_by_alias"),
    ("list page (newest)", "search_model_versions (a model's newest 50)"),
    ("register one variant", "create_model_version"),
    ("move an alias", "set_registered_model_alias"),
)


@dataclass
class Beside:
    operation: str
    ours: float  # ms, median
    mlflow_call: str
    mlflow: float  # ms, median
    mlflow_p95: float

    @property
    def ratio(self) -> float:
        """Our time as a share of MLflow's (below 1: faster)."""
        return self.ours / self.mlflow


def against_mlflow(
    figures: list[Figure], folder: Path, versions: int, repeat: int, warmup: int, seed: int
) -> tuple[list[Beside], dict[str, Any]]:
    """MLflow's model registry (the in-process client on its SQLAlchemy store, a SQLite file)
    with the same shape of workload: one registered model per recipe, `versions` versions over
    them, the same aliases; each operation both offer timed as ours was."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow
    from mlflow import MlflowClient

    rng = random.Random(seed + 2)
    url = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    models = [f"{name}-v{version}" for name in RECIPES for version in (1, 2)]
    started = time.perf_counter()
    for model in models:
        client.create_registered_model(model)
    for i in range(versions):
        client.create_model_version(models[i % len(models)], f"file:///bench/{i}/model.onnx")
    built = time.perf_counter() - started
    per_model = versions // len(models)
    for alias in ALIASES:
        for model in models:
            client.set_registered_model_alias(model, alias, str(rng.randint(1, per_model)))

    def by_alias(_: int) -> None:
        found = client.get_model_version_by_alias(rng.choice(models), rng.choice(ALIASES))
        assert found.version

    def page(_: int) -> None:
        found = client.search_model_versions(
            f"name = '{rng.choice(models)}'", max_results=PAGE, order_by=["version_number DESC"]
        )
        assert len(found) == min(PAGE, per_model)

    def register(i: int) -> None:
        client.create_model_version(rng.choice(models), f"file:///bench/new-{i}/model.onnx")

    def move(_: int) -> None:
        client.set_registered_model_alias(
            rng.choice(models), "bench-mlflow", str(rng.randint(1, per_model))
        )

    calls = {
        "get_model_version_by_alias": by_alias,
        "search_model_versions (a model's newest 50)": page,
        "create_model_version": register,
        "set_registered_model_alias": move,
    }
    ours = {f.operation: f for f in figures}
    out = []
    for operation, call in SIDE_BY_SIDE:
        theirs = timed(call, None, calls[call], repeat, warmup)
        out.append(Beside(operation, ours[operation].median, call, theirs.median, theirs.p95))
    info = {
        "mlflow": mlflow.__version__,
        "store": "MLflow's SQLAlchemy store on a SQLite file, in-process client",
        "models": len(models),
        "versions": versions,
        "build_seconds": round(built, 1),
    }
    return out, info


# --- report ------------------------------------------------------------------------------------


def database_size(catalog: Catalog, path: Path | None) -> int:
    if path is not None:
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with catalog.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            ).scalar_one()
        )


def server_version(catalog: Catalog) -> str:
    if catalog.dialect == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with catalog.engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar_one()
    return f"PostgreSQL {version}"


def checkpoint_wal(catalog: Catalog) -> None:
    """Fold the WAL into the database file, as a quiet catalog would be after synthesis."""
    raw = catalog.engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{size:,.0f} B"
        size /= 1024
    raise AssertionError


def report_mlflow(info: dict[str, Any], beside: list[Beside]) -> None:
    print()
    print(
        f"beside MLflow {info['mlflow']} ({info['store']}; {info['models']} registered models, "
        f"{info['versions']:,} versions, built in {info['build_seconds']:,} s)"
    )
    head = f"{'operation':<24} {'compressgate':>13} {'MLflow':>11} {'ratio':>7}  MLflow call"
    print(head)
    print("-" * (len(head) + 30))
    for b in beside:
        print(
            f"{b.operation:<24} {b.ours:>10.2f} ms {b.mlflow:>8.2f} ms {b.ratio:>7.3f}  "
            f"{b.mlflow_call}"
        )
    print("medians; ratio: compressgate's time over MLflow's (below 1: compressgate is faster)")


def report(info: dict[str, Any], figures: list[Figure], commands: list[Command]) -> None:
    print("compressgate catalog benchmark")
    for key, value in info["summary"].items():
        print(f"  {key:<11} {value}")
    head = f"{'operation':<40} {'median':>14} {'p95':>14} {'goal':>16}  result"
    print()
    print(head)
    print("-" * len(head))
    for f in figures:
        if f.unit == "ms":
            median, p95 = f"{f.median:.2f} ms", f"{f.p95:.2f} ms"
            goal = f"≤ {f.goal:g} ms" if f.goal is not None else "(SQLite only)"
        else:
            median, p95 = f"{f.median:,.0f} ev/s", f"{f.p95:,.0f} ev/s"
            goal = f"≥ {f.goal:,.0f} ev/s" if f.goal is not None else "-"
        verdict = {True: "ok", False: "MISS", None: "-"}[f.ok]
        note = f"  ({f.note})" if f.note else ""
        print(f"{f.operation:<40} {median:>14} {p95:>14} {goal:>16}  {verdict}{note}")
    print()
    print(
        "median and p95 over the timed calls (audit verify: median and slowest of the runs); "
        f"{sum(f.ok is False for f in figures)} of {sum(f.ok is not None for f in figures)} "
        "targets missed"
    )
    if not commands:
        return
    head = f"{'command':<34} {'cold':>9} {'warm':>9} {'worst':>9} {'goal (cold)':>12}  result"
    print()
    print(head)
    print("-" * len(head))
    for c in commands:
        goal = f"≤ {c.goal:g} s" if c.goal is not None else "-"
        verdict = {True: "ok", False: "MISS", None: "-"}[c.ok]
        note = f"  ({c.note})" if c.note else ""
        print(
            f"{c.operation:<34} {c.cold:>8.3f}s {c.warm:>8.3f}s {c.worst:>8.3f}s {goal:>12}  "
            f"{verdict}{note}"
        )
    print()
    print(
        "cold: the command's first run on this catalog, in a fresh process; warm: the median of "
        f"the runs after it; {sum(c.ok is False for c in commands)} of "
        f"{sum(c.ok is not None for c in commands)} targets missed"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=VARIANTS, help="a multiple of 5")
    parser.add_argument("--events", type=int, default=EVENTS, help="events in the chain")
    parser.add_argument("--catalog", help="an EMPTY catalog URL (default: SQLite in a temp dir)")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before them")
    parser.add_argument("--verify-runs", type=int, default=3, help="full chain verifications")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--command-runs", type=int, default=5, help="runs of each command after its first"
    )
    parser.add_argument(
        "--audit-runs", type=int, default=2, help="runs of each `audit verify` after its first"
    )
    parser.add_argument("--no-commands", action="store_true", help="library calls only")
    parser.add_argument(
        "--against-mlflow",
        action="store_true",
        help="time the same operations on MLflow's model registry (mlflow-skinny, the "
        "`mlflow` extra), as many versions as --variants; minutes at 100,000",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI's sizes: 10,000 variants, 100,000 events, fewer repeats",
    )
    options = parser.parse_args()
    if options.quick:
        options.variants, options.events = 10_000, 100_000
        options.repeat, options.warmup, options.verify_runs = 50, 5, 1
        options.command_runs, options.audit_runs = 3, 1
    if options.variants < len(STAGES) or options.variants % len(STAGES):
        parser.error(f"--variants must be a positive multiple of {len(STAGES)}")

    # A workspace: its store (the aliases' files), an auditor's key and trust file, the
    # checkpoint; and the catalog itself unless --catalog names one.
    folder = Path(tempfile.mkdtemp(prefix="cg-bench-catalog-"))
    path = None if options.catalog else folder / "catalog.db"
    url = options.catalog or f"sqlite:///{path}"
    where = ["--workspace", str(folder), "--catalog", url]
    commands: list[Command] = []
    try:
        catalog = Catalog(url)
        events_before = catalog.head().size
        if events_before != SCHEMA_VERSION:  # one event per migration
            parser.error(
                f"{safe_url(url)} holds {events_before:,} events: give an empty catalog "
                "(its tables are append-only: use a fresh database or schema)"
            )
        keys = auditor(folder)
        checkpoint = folder / "checkpoint.json"
        mark = max(SCHEMA_VERSION + 1, int(options.events * SINCE_FRACTION))
        synthesis = synthesize(
            catalog,
            options.variants,
            options.events,
            options.seed,
            options.batch,
            progress=sys.stderr.isatty(),
            at=None
            if options.no_commands
            else (mark, lambda: sign_checkpoint(where, keys, checkpoint)),
        )
        size = catalog.head().size
        assert size == options.events, (size, options.events)
        if catalog.dialect == "sqlite":
            checkpoint_wal(catalog)
        else:
            with catalog.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        on_disk = database_size(catalog, path)
        stored_files = store_targets(catalog, folder)
        catalog.close()
        # Let the OS write back what synthesis left dirty: an fsync at commit would otherwise
        # queue behind gigabytes of writeback and time the synthesis, not the catalog.
        os.sync()
        load = os.getloadavg()[0]
        catalog = Catalog(url)  # measured on a fresh engine, as a new process would
        if not options.no_commands:
            # Before the library's timings, which append (new stages, alias moves, a policy).
            commands = measure_commands(
                catalog,
                synthesis,
                where,
                checkpoint,
                keys,
                options.command_runs,
                options.audit_runs,
            )
        figures = measure(
            catalog, synthesis, options.repeat, options.warmup, options.verify_runs, options.seed
        )
        version = server_version(catalog)
        catalog.close()
        beside: list[Beside] = []
        mlflow_info: dict[str, Any] = {}
        if options.against_mlflow:
            beside, mlflow_info = against_mlflow(
                figures, folder, options.variants, options.repeat, options.warmup, options.seed
            )
    finally:
        if not options.keep:
            shutil.rmtree(folder, ignore_errors=True)

    counts = ", ".join(f"{n} {t}" for t, n in sorted(synthesis.counts.items(), key=lambda i: -i[1]))
    info = {
        "summary": {
            "catalog": safe_url(url) + (f" (kept, workspace {folder})" if options.keep else ""),
            "versions": f"{version}, Python {platform.python_version()}, "
            f"SQLAlchemy {sa.__version__}",
            "contents": f"{options.variants:,} variants in {len(synthesis.run_ids):,} runs, "
            f"{size:,} events",
            "rows": f"{counts} (+{SCHEMA_VERSION} schema migrations)",
            "synthesis": f"{synthesis.seconds:.1f} s "
            f"({(size - SCHEMA_VERSION) / synthesis.seconds:,.0f} "
            f"events/s, {options.batch:,} rows per append)",
            "size": f"{_human(on_disk)} on disk ({on_disk / size:,.0f} B per event, "
            f"{_human(on_disk / options.variants)} per variant with its evidence)",
            "timing": f"{options.repeat} timed calls after {options.warmup} warm-up per "
            f"operation; {options.verify_runs} chain verifications; load average "
            f"{load:.2f} on {os.cpu_count()} CPUs before timing",
            "commands": "none (--no-commands)"
            if options.no_commands
            else f"the console script, a fresh process each run: the first run, then "
            f"{options.command_runs} more ({options.audit_runs} of audit verify); "
            f"{stored_files} aliased files in the store; the checkpoint signed at "
            f"{mark:,} events",
        },
        "catalog": safe_url(url),
        "dialect": catalog.dialect,
        "server": version,
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "variants": options.variants,
        "runs": len(synthesis.run_ids),
        "events": size,
        "rows": synthesis.counts,
        "synthesis_seconds": round(synthesis.seconds, 3),
        "load_average": round(load, 2),
        "cpus": os.cpu_count(),
        "bytes_on_disk": on_disk,
        "bytes_per_variant": round(on_disk / options.variants),
        "figures": [{**asdict(f), "ok": f.ok} for f in figures],
        "commands": [{**asdict(c), "ok": c.ok} for c in commands],
        "against_mlflow": {
            **mlflow_info,
            "operations": [{**asdict(b), "ratio": round(b.ratio, 4)} for b in beside],
        }
        if beside
        else None,
    }
    if options.json:
        del info["summary"]
        print(json.dumps(info, indent=2))
    else:
        report(info, figures, commands)
        if beside:
            report_mlflow(mlflow_info, beside)
    return 0


if __name__ == "__main__":
    sys.exit(main())
