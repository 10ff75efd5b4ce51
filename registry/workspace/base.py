"""What a workspace holds, each resolved once: its folder, catalog, artifact store, the trust
it judges with (the catalog's signed policy; without one, a trust file: `trust_file`), the
runner's key, and recipes prepared against them (`compressgate.registry.workspace`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from compressgate.registry.kernel.errors import CompressgateError, IntegrityError, NotFoundError

log = logging.getLogger(__name__)

# The results (pydantic models) are imported by the verbs that build them: a read command that
# prints catalog rows never builds their classes.
if TYPE_CHECKING:
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.repository import (
        Catalog,
    )
    from compressgate.registry.catalog.store import ArtifactStore
    from compressgate.registry.governance.policy import PolicyChain
    from compressgate.registry.governance.review import TrustSource
    from compressgate.registry.kernel.keys import PrivateKey
    from compressgate.registry.run.engine import RunOptions
    from compressgate.registry.run.isolation import Outcome
    from compressgate.registry.run.prepared import PreparedRecipe

WORKSPACE_ENV = "COMPRESSGATE_WORKSPACE"
DEFAULT_WORKSPACE = Path(".compressgate")


def workspace_dir(explicit: Path | None) -> Path:
    """`--workspace`, else $COMPRESSGATE_WORKSPACE, else ./.compressgate."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


def _no_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite catalog whose file does not exist (yet)."""
    prefix = "sqlite:///"
    return url.startswith(prefix) and not Path(url.removeprefix(prefix)).is_file()


def _private_key(path: Path | None) -> PrivateKey | None:
    from compressgate.registry.kernel.keys import load_private_key

    return None if path is None else load_private_key(path)


def is_run_id(ref: str) -> bool:
    return ref.startswith("run-") and "/" not in ref


class WorkspaceBase:
    """What a workspace holds, each resolved once: its folder, catalog, artifact store, trust
    files, and recipes prepared (read, parsed, verified) against them. `Workspace` adds the
    verbs."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        catalog: str | None = None,
        trust: Path | None = None,
        envs: Path | None = None,
        key: Path | None = None,
    ) -> None:
        self.root = workspace_dir(root)
        self.catalog_option = catalog
        self.trust_option = trust
        self.envs_option = envs
        self.key_option = key  # the runner's private key: attests runs under a policy
        self.base_ref: str | None = None  # `ci --base`: trust as the protected branch has it
        self._catalog: Catalog | None = None
        self._writable = False
        self._trusts: dict[Path, Trust] = {}
        self._chain: PolicyChain | None = None

    # --- what a workspace holds, opened once --------------------------------------------------

    @cached_property
    def catalog_url(self) -> str:
        from compressgate.registry.catalog.repository import catalog_url

        return catalog_url(self.root, self.catalog_option)

    def catalog(self, *, write: bool = False) -> Catalog:
        """The catalog, opened on first use and kept open. Reading needs it to exist and be of
        the current schema (exit 4, exit 5); `write` creates it, or migrates an older one."""
        from compressgate.registry.catalog.repository import Catalog, safe_url

        if self._catalog is not None and (self._writable or not write):
            return self._catalog
        if self._catalog is not None:  # opened to read, now to write: migrate it in place
            self._catalog.migrate()
            self._writable = True
            return self._catalog
        self._catalog = Catalog(self.catalog_url, create=write, migrate=write)
        log.debug(
            "catalog opened (%s): %s", "write" if write else "read", safe_url(self.catalog_url)
        )
        self._writable = write
        return self._catalog

    @cached_property
    def store(self) -> ArtifactStore:
        from compressgate.registry.catalog.store import ArtifactStore

        return ArtifactStore(self.root)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- trust ------------------------------------------------------------------------------

    def policy_chain(self) -> PolicyChain:
        """The catalog's policy versions, each verified (exit 3 for one that does not count);
        empty where there is no catalog yet or it has no policy (the unsigned regime)."""
        from compressgate.registry.governance.policy import PolicyChain, load_chain

        if self._chain is None:
            if self._catalog is None and _no_sqlite_file(self.catalog_url):
                return PolicyChain(())  # nothing to open: no catalog yet
            try:
                catalog = self.catalog()
            except NotFoundError:
                return PolicyChain(())
            self._chain = load_chain(catalog)
        return self._chain

    def judge(self, run_id: str) -> TrustSource:
        """What a run's sign-offs are checked with: the policy chain, else (unsigned regime)
        the run's trust file, loaded only if there is a sign-off to check."""
        chain = self.policy_chain()
        if chain.current is None:
            return self.run_trust(run_id)
        self._policy_file()  # a --trust that is not the policy in force is refused
        return chain

    def _judge_option(self) -> Path | PolicyChain | None:
        chain = self.policy_chain()
        if chain.current is None:
            return self.trust_option
        self._policy_file()  # a --trust that is not the policy in force is refused
        return chain

    def _policy_file(self) -> Path | None:
        """Under a policy, the policy in force as a file (its exact bytes from the catalog); a
        `--trust` file must be exactly it (exit 3 otherwise): a trust file is a proposal."""
        from compressgate.registry.governance.policy import materialize
        from compressgate.registry.kernel.digests import sha256_file

        current = self.policy_chain().current
        if current is None:
            return None
        if self.trust_option is not None:
            given = sha256_file(self.trust_option) if self.trust_option.is_file() else None
            if given != current.sha256:
                raise IntegrityError(
                    f"{self.trust_option} is not the catalog's policy in force (version "
                    f"{current.version}, sha256 {current.sha256[:16]}…): a trust file is only "
                    "a proposal here",
                    hint="leave out --trust; propose a change with `compressgate trust propose "
                    "FILE`, signed by the root owners",
                )
        return materialize(self.root, current)

    def trust_file(self, recipe: Path) -> Path:
        """The trust for `recipe`: the catalog's policy in force; without one (the unsigned
        regime), `--trust`, else $COMPRESSGATE_TRUST, else trust.yaml beside it; none is
        exit 4."""
        from compressgate.registry.authoring import require_trust

        policy = self._policy_file()
        if policy is not None:
            return policy
        found = require_trust(
            recipe, self.trust_option, ": a run verifies the recipe's signature first"
        )
        return found if self.base_ref is None else self._base_trust(found)

    def _base_trust(self, found: Path) -> Path:
        """`ci --base REF` without a catalog policy: the trust file as the protected branch has
        it, never the pull request's. A trust file the pull request changed counts only as the
        next version of a signed policy on the base, signed by that policy's root threshold;
        one the base does not have, or any other change, is refused (exit 3)."""
        from compressgate.recipes.policy import (
            check_on_its_own,
            check_policy,
            envelope_path,
            parse_policy,
        )
        from compressgate.registry.changes import file_at
        from compressgate.registry.kernel.digests import sha256_bytes
        from compressgate.registry.kernel.dsse import Envelope
        from compressgate.registry.kernel.files import write_atomic

        assert self.base_ref is not None
        base = file_at(self.base_ref, found)
        if base is None:
            raise IntegrityError(
                f"{found}: {self.base_ref} has no such trust file; a trust file added by the "
                "change under review is not trusted to judge it",
                hint="add the trust file on the protected branch first (or adopt a policy in "
                "the catalog: `compressgate trust init`)",
            )
        mine = found.read_bytes()
        if mine != base:
            try:
                previous_envelope = file_at(self.base_ref, envelope_path(found))
                if previous_envelope is None:
                    raise IntegrityError(f"{self.base_ref}: {found.name} is not a signed policy")
                previous = check_on_its_own(
                    base,
                    Envelope.from_json(previous_envelope, source=f"{self.base_ref}:{found.name}"),
                    source=f"{self.base_ref}:{found.name}",
                )
                raw = envelope_path(found).read_bytes()
                parse_policy(mine, str(found))
                signed = Envelope.from_json(raw, source=str(envelope_path(found)))
                check_policy(mine, signed, source=str(found), previous=previous)
            except (CompressgateError, OSError) as exc:
                raise IntegrityError(
                    f"{found} differs from {self.base_ref}'s: the change under review changes "
                    f"the trust it is judged by, which only the base policy's root owners may "
                    f"do ({exc})",
                    hint="sign the new trust file as the next version (`compressgate trust "
                    "sign --offline`) with the base policy's root threshold",
                ) from None
            base = mine  # the next version, signed by the base policy's root threshold
        target = self.root / "policy" / f"base-{sha256_bytes(base)[:16]}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, base)
        return target

    def trust(self, path: Path) -> Trust:
        """The trust file at `path`, loaded once per workspace."""
        from compressgate.recipes.trust import load_trust

        if path not in self._trusts:
            self._trusts[path] = load_trust(path)
        return self._trusts[path]

    def run_trust_file(self, run_id: str) -> Path:
        """The trust file a recorded run is judged with: `--trust`, else trust.yaml beside the
        recipe the run recorded."""
        from compressgate.registry.governance.review import trust_path_for

        policy = self._policy_file()
        if policy is not None:
            return policy
        return trust_path_for(self.catalog(), run_id, self.trust_option)

    def run_trust(self, run_id: str) -> Callable[[], Trust]:
        """The trust of a recorded run, loaded only when a sign-off must be checked."""
        return lambda: self.trust(self.run_trust_file(run_id))

    # --- recipes ----------------------------------------------------------------------------

    def prepare(self, path: Path) -> PreparedRecipe:
        """The recipe at `path`, its signature verified against its trust file (exit 3 before
        any work): read once, parsed once, handed down from here."""
        from compressgate.recipes.signing import verify_recipe
        from compressgate.registry.run.prepared import PreparedRecipe

        trust_file = self.trust_file(path)
        trust = self.trust(trust_file)
        verified = verify_recipe(path, trust, trust_source=str(trust_file))
        log.info(
            "%s: signature verified against %s (signed by %s)",
            path,
            trust_file,
            ", ".join(sorted({s.owner for s in verified.signers})),
        )
        return PreparedRecipe(verified.loaded, trust, str(trust_file), verified)

    def runner(self) -> tuple[PrivateKey, str] | None:
        """Under a policy, the runner's key (`key`) and its owner, who must hold the `runner`
        role (exit 3 without a key, or with another's); None under the unsigned regime."""
        from compressgate.registry.kernel.keys import load_private_key

        current = self.policy_chain().current
        if current is None:
            return None
        if self.key_option is None:
            raise IntegrityError(
                f"a run under the catalog's policy v{current.version} is attested by its runner: "
                "no key given",
                hint="give --key RUNNER_KEY (an owner with the 'runner' role), or set "
                "$COMPRESSGATE_RUNNER_KEY",
            )
        key = load_private_key(self.key_option)
        owner = current.trust.keys_with_role("runner").get(key.public)
        if owner is None:
            who = current.trust.owner_of(key.public)
            raise IntegrityError(
                f"key {key.public.keyid[:16]}… "
                + (f"of '{who}' lacks" if who else "is not in the policy and lacks")
                + f" the 'runner' role in policy v{current.version}: it cannot attest a run",
                hint="a runner's key attests runs; the policy's root owners grant the role",
            )
        return key, owner

    def _run_options(self, trust: Path, *, attested: bool = True, **settings: Any) -> RunOptions:
        """The options of a run; `attested` (under a policy): it needs a runner's key."""
        from compressgate.registry.run.engine import RunOptions

        current = self.policy_chain().current
        if current is not None and attested:
            self.runner()  # exit 3 before any work without a runner's key
            settings["runner_key"] = self.key_option
            settings["trusted_runners"] = tuple(
                k.public_hex for k in current.trust.keys_with_role("runner")
            )
        if current is not None:
            settings["trust_sha256"] = current.sha256
        return RunOptions(
            workspace=self.root,
            trust=trust,
            catalog=self.catalog_option,
            envs=self.envs_option,
            **settings,
        )

    def _attest(self, outcome: Outcome) -> None:
        """Under a policy, the runner's signed statement of the finished run, recorded."""
        from compressgate.registry.governance.attestation import record_attested

        current = self.policy_chain().current
        found = self.runner()
        if current is None or found is None:
            return
        key, owner = found
        record_attested(
            self.catalog(write=True),
            outcome.record,
            list(outcome.decisions),
            key,
            owner=owner,
            policy=(current.version, current.sha256),
        )
