"""The trust file (`trust.yaml`): owners, their Ed25519 public keys and their roles.

    apiVersion: compressgate/v1
    kind: Trust
    owners:
      ml-platform:
        roles: [author]
        keys:
          - {keyid: 3f2a…, keytype: ed25519, scheme: ed25519, keyval: {public: 9c1d…}}

    modules: [compressgate.recipes.examples, acme.models]

Roles: `author` signs recipes, `approver` signs gate approvals and waivers, `auditor` signs
catalog checkpoints, `releaser` moves aliases, `root` signs the next version of the policy,
`runner` attests the runs it ran (and signs their stage cache entries). A key belongs to one
owner only.

A trust file is a proposal until a catalog adopts it as its **policy** (`compressgate trust
init`, then `trust sign` and `trust apply` for each later version, `registry.governance.policy`):
then it also declares its root role and may declare duties and alias rules:

    root: {threshold: 2}          # distinct root owners who must sign the next version
    separation: true              # a recipe's signers may not approve or waive its gates
    aliases:
      production: {releasers: [release-eng], separate: true}

`modules` is the allow-list of code a recipe may name: a factory or loader `pkg.mod:function` is
imported only if `pkg.mod` or a package above it is listed, so a signed recipe still cannot run
`os:system`. Without the key, only `compressgate.recipes.examples` (the examples that ship with
compressgate)
is allowed. Standard-library modules can never be listed.

`plugins` is the allow-list of third-party distributions whose stages and evaluators (entry
points `compressgate.stages`, `compressgate.evaluators`) recipes may use, each at one version
and optionally at one exact code digest (`compressgate plugins` shows it):

    plugins:
      - {distribution: compressgate-toy, version: "0.1.0", sha256: 5be1…}

Without the key, no plug-in runs. Allowing a distribution allows its entry points' own modules
only: `modules` still governs what factories and loaders may name.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Annotated, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, Field, ValidationError, model_validator

from compressgate.recipes.manifest import API_VERSION, Name
from compressgate.recipes.spec import Spec
from compressgate.recipes.yamldoc import dump_yaml, parse_yaml, validate
from compressgate.registry.kernel.errors import Issue, ManifestError, NotFoundError
from compressgate.registry.kernel.files import write_atomic
from compressgate.registry.kernel.keys import OWNER_NAME, PublicKey

Role = Literal["author", "approver", "auditor", "releaser", "root", "runner"]
ROLES: tuple[str, ...] = ("author", "approver", "auditor", "releaser", "root", "runner")
SEPARATE_BY_DEFAULT = ("production",)  # aliases whose releaser may not be the recipe's signer

TRUST_FILE_NAME = "trust.yaml"  # looked for beside a recipe when no trust file is named
DEFAULT_MODULES: tuple[str, ...] = ("compressgate.recipes.examples",)
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _module_name(value: str) -> str:
    if not _MODULE.match(value):
        raise ValueError(f"'{value}' is not a module name (dotted identifiers, e.g. acme.models)")
    top = value.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise ValueError(
            f"'{value}' is in the standard library: recipes may not import from it; "
            "list the package that holds your factories and loaders"
        )
    return value


ModuleName = Annotated[str, AfterValidator(_module_name)]


# Entry points that turn bytes into arbitrary objects (running code on the way): never a
# factory or a loader, whatever the allow-list says. Any module whose last part names pickle
# (pickle, cloudpickle, joblib.numpy_pickle, pandas.io.pickle…) counts whole.
DESERIALISERS = frozenset(
    {
        "torch.load",
        "torch.serialization.load",
        "numpy.load",
        "numpy.lib.npyio.load",
        "numpy.lib._npyio_impl.load",
        "numpy.fromfile",
        "joblib.load",
        "pandas.read_pickle",
        "dill.load",
        "dill.loads",
        "yaml.load",
        "yaml.load_all",
        "yaml.unsafe_load",
        "yaml.unsafe_load_all",
        "yaml.full_load",
        "yaml.full_load_all",
        "onnx.load_model_from_string",
    }
)


def deserialiser(module: str, name: str) -> bool:
    """Whether `module.name` is a known deserialising entry point (`DESERIALISERS`)."""
    last = module.rpartition(".")[2]
    return (
        f"{module}.{name}" in DESERIALISERS
        or "pickle" in last.lower()
        or module.partition(".")[0] in ("dill", "cloudpickle", "shelve", "marshal")
    )


def module_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    """Whether `module` is one of `allowed` or inside one of those packages."""
    return any(module == entry or module.startswith(f"{entry}.") for entry in allowed)


def installed_spec(top: str) -> ModuleSpec | None:
    """The spec of the top-level module `top` as installed (what `import` finds without a
    recipe's folder), without importing it; a recipe's local module already imported in this
    process (`compressgate.recipes.models.SignedModules`) is not an installed one."""
    loaded = sys.modules.get(top)
    loader = getattr(getattr(loaded, "__spec__", None), "loader", None)
    if loaded is not None and getattr(loader, "signed_source", None) is not None:
        del sys.modules[top]  # find_spec answers from sys.modules first
        try:
            return installed_spec(top)
        finally:
            sys.modules[top] = loaded
    try:
        return importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None


def shadowed_by(module_name: str, base: Path | None) -> Path | None:
    """A module or package beside the recipe named like an importable one, which it would
    have shadowed: a recipe must not name it (it is never what gets imported)."""
    if base is None:
        return None
    top = module_name.partition(".")[0]
    beside = [p for p in (base / f"{top}.py", base / top) if p.exists()]
    if not beside:
        return None
    installed = installed_spec(top)
    origin = getattr(installed, "origin", None) if installed is not None else None
    if installed is None or (origin and Path(origin).resolve().is_relative_to(base.resolve())):
        return None
    return beside[0]


class KeyVal(Spec):
    public: str = Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")


class TrustedKey(Spec):
    """A public key in the securesystemslib form; `keyid`, if given, must match the key."""

    keyid: str | None = None
    keytype: Literal["ed25519"] = "ed25519"
    scheme: Literal["ed25519"] = "ed25519"
    keyval: KeyVal

    @model_validator(mode="after")
    def _keyid_matches(self) -> TrustedKey:
        actual = self.public_key.keyid
        if self.keyid is not None and self.keyid != actual:
            raise ValueError(f"keyid does not match the key; the key's id is {actual}")
        return self

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.keyval.public)


class Owner(Spec):
    roles: tuple[Role, ...] = Field(min_length=1)
    keys: tuple[TrustedKey, ...] = Field(min_length=1)


class RootRole(Spec):
    """Who may change the policy: `threshold` distinct owners holding the `root` role sign each
    next version (and the first one), as TUF's root role signs the next root."""

    threshold: int = Field(ge=1, le=64)


class AliasRule(Spec):
    """Who may move an alias. `releasers`: the owners (each with the `releaser` role) allowed,
    default every releaser; `separate`: the releaser may not be one of the recipe's signers,
    default true for `production` only; `attested_by`: the run must have been attested by one
    of these runners (each with the `runner` role), default any runner; `shared`: the alias is
    one across recipes, where by default a policy scopes it to one (`digits-cnn:production`)."""

    releasers: tuple[Name, ...] | None = None
    separate: bool | None = None
    attested_by: tuple[Name, ...] | None = None
    shared: bool = Field(
        default=False,
        description="one alias across recipes; by default an alias belongs to one recipe "
        "(`RECIPE:NAME`)",
    )


_DISTRIBUTION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")


def _distribution_name(value: str) -> str:
    if not _DISTRIBUTION.match(value):
        raise ValueError(
            f"'{value}' is not a distribution name (letters, digits, '-', '_' and '.', as "
            "`pip install` takes it, e.g. compressgate-toy)"
        )
    return value


def _exact_version(value: str) -> str:
    pinned = value.strip().removeprefix("==").strip()
    try:
        Version(pinned)
    except InvalidVersion:
        raise ValueError(
            f"'{value}' is not one exact version: pin the release you reviewed ('==0.1.0'); "
            "a new release is new code, which needs a new version of the policy"
        ) from None
    return pinned


class PluginRule(Spec):
    """A plug-in distribution recipes may use: its name, the one version allowed and, if given,
    the sha256 of its installed code (`compressgate plugins` shows it)."""

    distribution: Annotated[str, AfterValidator(_distribution_name)]
    version: Annotated[str, AfterValidator(_exact_version)] = Field(
        description="the one release allowed, e.g. '0.1.0' or '==0.1.0'"
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="the code digest of the installed distribution (its RECORD's files as they "
        "are on disk); given, another build of the same version is refused",
    )

    @property
    def canonical(self) -> str:
        return canonicalize_name(self.distribution)

    def pin(self) -> str:
        return f"{self.distribution}=={self.version}"


class Trust(Spec):
    api_version: Literal["compressgate/v1"] = Field(alias="apiVersion")
    kind: Literal["Trust"]
    owners: dict[Name, Owner] = Field(min_length=1)
    modules: tuple[ModuleName, ...] = Field(
        default=DEFAULT_MODULES,
        description="modules (and their submodules) whose factories and loaders recipes may name",
    )
    root: RootRole | None = Field(
        default=None, description="the root role; a catalog's policy must declare it"
    )
    separation: bool = Field(
        default=True, description="a recipe's signers may not approve or waive its gates"
    )
    aliases: dict[str, AliasRule] = Field(default_factory=dict)
    plugins: tuple[PluginRule, ...] = Field(
        default=(),
        description="third-party distributions whose stages and evaluators recipes may use; "
        "default none",
    )

    @model_validator(mode="after")
    def _roots_reach_threshold(self) -> Trust:
        if self.root is not None:
            holders = [n for n, o in self.owners.items() if "root" in o.roles]
            if len(holders) < self.root.threshold:
                raise ValueError(
                    f"root.threshold is {self.root.threshold} but only {len(holders)} owner(s) "
                    "hold the 'root' role: the policy could never change"
                )
        seen: dict[str, int] = {}
        for index, plugin in enumerate(self.plugins):
            if plugin.canonical in seen:
                raise ValueError(
                    f"plugins[{index}] names {plugin.distribution} again (first at "
                    f"plugins[{seen[plugin.canonical]}]): allow one version of a distribution"
                )
            seen[plugin.canonical] = index
        for alias, rule in self.aliases.items():
            for field, role, names in (
                ("releasers", "releaser", rule.releasers),
                ("attested_by", "runner", rule.attested_by),
            ):
                for name in names or ():
                    owner = self.owners.get(name)
                    if owner is None or role not in owner.roles:
                        raise ValueError(
                            f"aliases.{alias}.{field} names '{name}', who does not hold the "
                            f"'{role}' role"
                        )
        return self

    def alias_rule(self, alias: str) -> AliasRule:
        """The rule for `alias`, with its defaults filled in."""
        bare = alias.rpartition(":")[2]  # a scoped alias (RECIPE:NAME) follows NAME's rule
        rule = self.aliases.get(bare, AliasRule())
        separate = rule.separate if rule.separate is not None else bare in SEPARATE_BY_DEFAULT
        return rule.model_copy(update={"separate": separate})

    def root_owners(self) -> dict[PublicKey, str]:
        """Every root key, mapped to its owner."""
        return self.keys_with_role("root")

    def allows(self, module: str) -> bool:
        return module_allowed(module, self.modules)

    def plugin_rule(self, distribution: str) -> PluginRule | None:
        """The `plugins` entry of `distribution` (any spelling of its name), if any."""
        wanted = canonicalize_name(distribution)
        return next((rule for rule in self.plugins if rule.canonical == wanted), None)

    def plugin_refusal(
        self, distribution: str, version: str, code_sha256: str | None
    ) -> str | None:
        """Why the installed `distribution` at `version` (code digest `code_sha256`) may not
        run under this policy, as a clause (`the trust policy allows x==1 only`); None when its
        `plugins` entry allows it."""
        rule = self.plugin_rule(distribution)
        if rule is None:
            allowed = ", ".join(r.pin() for r in self.plugins) or "none"
            return f"the trust policy does not allow-list it (plugins: {allowed})"
        try:
            same = Version(version) == Version(rule.version)
        except InvalidVersion:
            same = version == rule.version
        if not same:
            return f"the trust policy allows {rule.pin()} only"
        if rule.sha256 is not None and code_sha256 != rule.sha256:
            return (
                f"its code sha256 is {code_sha256 or 'unknown (it has no RECORD)'}, and the trust "
                f"policy allows the build of {rule.pin()} with code sha256 {rule.sha256} only"
            )
        return None

    def keys_with_role(self, role: Role) -> dict[PublicKey, str]:
        """Every key whose owner holds `role`, mapped to the owner's name."""
        return {
            key.public_key: name
            for name, owner in self.owners.items()
            if role in owner.roles
            for key in owner.keys
        }

    def all_keys(self) -> list[PublicKey]:
        return [key.public_key for owner in self.owners.values() for key in owner.keys]

    def owner_of(self, key: PublicKey) -> str | None:
        for name, owner in self.owners.items():
            if any(k.public_key == key for k in owner.keys):
                return name
        return None


def load_trust(path: Path) -> Trust:
    """Read and check a trust file; errors name the file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(
            f"trust file {path} not found",
            hint="create one with `compressgate trust add`",
        ) from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ManifestError(f"{path}: cannot be read as a UTF-8 text file ({exc})") from None
    except OSError as exc:  # a symbolic link loop, no permission to read, …
        raise ManifestError(f"{path}: cannot read the trust file ({exc.strerror or exc})") from None
    return parse_trust(text, str(path))


def parse_trust(text: str, source: str) -> Trust:
    """A trust document's text, checked; errors name `source`, the line and the field."""
    path = source
    document = parse_yaml(text, source)
    trust = validate(Trust, document)
    seen: dict[str, str] = {}
    for name, owner in trust.owners.items():
        for index, key in enumerate(owner.keys):
            keyid = key.public_key.keyid
            if keyid in seen and seen[keyid] != name:
                line, where = document.locate(("owners", name, "keys", index))
                raise ManifestError(
                    issues=(
                        Issue(
                            str(path), line, where, f"this key already belongs to '{seen[keyid]}'"
                        ),
                    )
                )
            seen[keyid] = name
    return trust


def add_owner_key(path: Path, owner: str, key: PublicKey, roles: tuple[Role, ...]) -> Trust:
    """Add `key` and `roles` to `owner` in the trust file, creating the file if needed."""
    if not OWNER_NAME.match(owner):  # the rule `keys generate` applies to the same names
        raise ManifestError(
            f"owner name {owner!r} must be lowercase letters, digits and '-' (at most 64)"
        )
    if path.exists():
        trust = load_trust(path)
        owners, modules, rest = dict(trust.owners), trust.modules, _rest(trust)
    else:
        owners, modules, rest = {}, DEFAULT_MODULES, {}
    holder = next((name for name, o in owners.items() for k in o.keys if k.public_key == key), None)
    if holder is not None and holder != owner:
        raise ManifestError(f"{path}: key {key.keyid} already belongs to '{holder}'")
    current = owners.get(owner)
    keys = list(current.keys) if current else []
    if all(k.public_key != key for k in keys):
        keys.append(TrustedKey(keyid=key.keyid, keyval=KeyVal(public=key.public_hex)))
    merged_roles = tuple(dict.fromkeys([*(current.roles if current else ()), *roles]))
    owners[owner] = Owner(roles=merged_roles, keys=tuple(keys))
    return _write_trust(path, owners, modules, rest)


def allow_modules(path: Path, modules: tuple[str, ...]) -> Trust:
    """Add `modules` to the trust file's allow-list (the file must exist)."""
    trust = load_trust(path)
    merged = tuple(dict.fromkeys([*trust.modules, *modules]))
    try:
        return _write_trust(path, dict(trust.owners), merged, _rest(trust))
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ManifestError(f"{path}: cannot allow it: {reason}") from None


def _rest(trust: Trust) -> dict[str, object]:
    """The policy's fields other than owners and modules, as a file states them."""
    return trust.model_dump(
        mode="json",
        by_alias=True,
        exclude_unset=True,
        include={"root", "separation", "aliases", "plugins"},
    )


def _write_trust(
    path: Path, owners: dict[str, Owner], modules: tuple[str, ...], rest: dict[str, object]
) -> Trust:
    trust = Trust.model_validate(
        {"apiVersion": API_VERSION, "kind": "Trust", "owners": owners, "modules": modules, **rest},
        by_alias=True,
    )
    dumped = trust.model_dump(mode="json", by_alias=True, exclude_none=True)
    # said only when not default
    for field, default in (("separation", True), ("aliases", {}), ("plugins", [])):
        if dumped.get(field) == default:
            dumped.pop(field)
    body = dump_yaml(dumped)
    write_atomic(path, body.encode("utf-8"))
    return trust


def set_root_threshold(path: Path, threshold: int) -> Trust:
    """Declare the root role's threshold in the trust file (a policy needs it)."""
    trust = load_trust(path)
    rest = _rest(trust) | {"root": {"threshold": threshold}}
    try:
        return _write_trust(path, dict(trust.owners), trust.modules, rest)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ManifestError(f"{path}: cannot set root.threshold: {reason}") from None
