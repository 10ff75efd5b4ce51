"""What a report shows, as plain data: built by `registry` from catalog records, rendered here.

`reports` never opens the catalog: `compressgate.registry.reporting` reads the run, its review,
the recipe as recorded, earlier runs of the recipe and the chain head, checks the recipe's
signature, and `compressgate.reports.assemble` turns those records into a `ReportData` for
`compressgate.reports.render`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compressgate.gates.review import ReviewStatus


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SignerInfo(Frozen):
    owner: str
    keyid: str


class RecipeIdentity(Frozen):
    name: str
    version: int
    sha256: str
    path: str
    description: str = ""
    owners: list[str] = Field(default_factory=list)
    signers: list[SignerInfo] = Field(default_factory=list)
    verified: bool = Field(description="the recorded signature verified at render time")
    signature: str = Field(description="what the signature check at render time said")
    content: str = Field(description="the recipe's exact text, as recorded")


class Point(Frozen):
    """One variant on the accuracy plots."""

    run_id: str
    seed: int
    stage: str
    size_bytes: int | None
    latency_ms: float | None
    accuracy: float
    ci_low: float
    ci_high: float
    current: bool = Field(description="of the run the report is about")


class Change(Frozen):
    field: str
    before: str
    after: str


class SincePrevious(Frozen):
    """What changed since the previous approved run of the same recipe name."""

    run_id: str
    recipe_version: int
    recipe_sha256: str
    changes: list[Change]


class Chain(Frozen):
    """The catalog's chain head the report was rendered from: its newest event that is not a
    recorded report's (recording a report does not change the next rendering)."""

    size: int
    head_sha256: str
    checkpoint: dict[str, Any] | None = Field(
        default=None, description="the newest signed checkpoint given: tree size, head, signer"
    )


class Governance(Frozen):
    """Who ran the run, under which policy, and what it ran on: what an auditor asks first."""

    regime: str = Field(description="policy: recorded under a catalog's signed trust policy")
    policy_version: int | None = Field(default=None, description="in force when the run began")
    policy_sha256: str | None = None
    current_version: int | None = Field(default=None, description="in force at render time")
    runner: str | None = Field(default=None, description="the owner whose key attested the run")
    runner_keyid: str | None = None
    attestation: str = Field(description="what the attestation check at render time said")
    attested: bool = False
    packages: dict[str, str] = Field(
        default_factory=dict, description="the installed packages the run's fingerprint lists"
    )


class ReportData(Frozen):
    run: dict[str, Any] = Field(description="the run record, as `catalog show RUN --json`")
    review: ReviewStatus
    recipe: RecipeIdentity
    lock_sha256: str
    environment_sha256: str
    history: list[Point] = Field(default_factory=list)
    lineage: list[dict[str, Any]] = Field(
        default_factory=list, description="baseline → … → the final variant of the first seed"
    )
    since_previous: SincePrevious | None = None
    chain: Chain
    governance: Governance | None = None
