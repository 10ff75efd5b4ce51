"""Unsafe content: code a recipe names, pickles posing as weights, files outside the recipe's
folder, and secrets in output.

- A factory or loader is imported only from a module the trust file allow-lists, and the object
  must be defined there. Each case is a recipe that names forbidden code, *signed* (over its
  bytes, as an attacker holding an author key would), run through `recipe validate`, `run` and
  `submit`. The forbidden module beside the recipe would write a marker file when imported: it
  must never appear. A positive control allow-lists that module and shows the marker appears.
- A checkpoint that is a pickle calling a function on load is refused (`torch.load` with
  `weights_only=True`); the control shows plain `pickle` would have called it.
- File references (`environment.lock`, `model.checkpoint`) that leave the recipe's folder, by
  `..`, an absolute path or a symbolic link, are refused.
- No command prints a database password from a URL or private key material, and none writes
  them into the workspace: checked over every output and file of a session that uses them.
"""

from __future__ import annotations

import pickle
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from compressgate.registry.kernel.keys import load_private_key

from .common import (
    TINY,
    Bench,
    Figure,
    Options,
    Outcome,
    cg,
    footprint,
    invoke,
    make_bench,
    sign_bytes,
)

SECTION = "unsafe content"

EVIL = """\
from pathlib import Path

Path(__file__).with_name("MARKER").write_text("imported")


def build(**args):
    from compressgate.recipes.examples.digits import build_cnn

    return build_cnn(**args)


def load(seed, **args):
    from compressgate.recipes.examples.digits import load as real

    return real(seed, **args)
"""

# Forbidden references: a module beside the recipe that is not allow-listed, the standard
# library, and objects reached through an allowed module but defined elsewhere.
FORBIDDEN = (
    "evil:build",
    "os:system",
    "subprocess:run",
    "builtins:eval",
    "importlib:import_module",
    "compressgate.recipes.examples.digits:torch.load",
    "compressgate.recipes.examples.digits:np.load",
    "torch.hub:load",
)
FIELDS = {
    "model.factory": "factory: compressgate.recipes.examples.digits:build_cnn",
    "data.loader": "loader: compressgate.recipes.examples.digits:load",
}


@dataclass(frozen=True)
class Check:
    """One case: `held` if the guarantee held; `detail` says what was seen otherwise."""

    name: str
    held: bool
    detail: str = ""


def refused(outcome: Outcome, code: int = 2) -> str:
    """'' if `outcome` is a clean refusal with `code`, else what was wrong."""
    if outcome.code != code:
        return f"exit {outcome.code}: {outcome.stderr.strip()[-300:]}"
    if not outcome.clean:
        return f"not one clean line: {outcome.stderr.strip()[-300:]}"
    return ""


def _forbidden_recipe(bench: Bench, field: str, ref: str, index: int) -> Path:
    old = FIELDS[field]
    text = TINY.replace("NAME", f"unsafe-{index}").replace("SEED", "0")
    assert text.count(old) == 1
    path = bench.root / f"unsafe-{index}.yaml"
    path.write_text(text.replace(old, f"{old.split(':')[0]}: {ref}"), encoding="utf-8")
    sign_bytes(bench, path, f"unsafe-{index}")
    return path


def _marker(bench: Bench) -> Path:
    return bench.root / "MARKER"


def forbidden_code(bench: Bench) -> Iterator[Check]:
    """Every FORBIDDEN reference in every field, through validate, run and submit."""
    (bench.root / "evil.py").write_text(EVIL, encoding="utf-8")
    before = footprint(bench.workspace)
    index = 0
    for field in FIELDS:
        for ref in FORBIDDEN:
            index += 1
            path = _forbidden_recipe(bench, field, ref, index)
            for command in (
                ("recipe", "validate", path),
                ("run", path, "--workspace", bench.workspace),
                ("submit", path, "--workspace", bench.workspace),
            ):
                # In this process: an import of the forbidden module would leave the marker.
                outcome = invoke(*command)
                problem = refused(outcome)
                if not problem and ref.partition(":")[0] not in outcome.stderr:
                    problem = f"the message does not name the module: {outcome.stderr.strip()}"
                if not problem and _marker(bench).exists():
                    problem = "the forbidden module was imported"
                if not problem and footprint(bench.workspace) != before:
                    problem = "something was written to the workspace or catalog"
                yield Check(f"{command[0]} {field}={ref}", not problem, problem)


def allow_listing_works(bench: Bench) -> Check:
    """The control: once `evil` is allow-listed, the same recipe imports it (the marker shows
    that the refusals above would have been seen): `recipe validate --power` runs the loader
    for its power check."""
    (bench.root / "evil.py").write_text(EVIL, encoding="utf-8")
    path = _forbidden_recipe(bench, "data.loader", "evil:load", 0)
    trust = bench.root / "trust-allowing-evil.yaml"
    shutil.copyfile(bench.trust, trust)
    try:
        allowed = invoke("trust", "allow", "evil", "--trust", trust)
        validated = invoke("recipe", "validate", "--power", path, "--trust", trust)
    finally:
        sys.modules.pop("evil", None)  # a later import must run its top level again
    held = allowed.code == 0 and validated.code == 0 and _marker(bench).exists()
    _marker(bench).unlink(missing_ok=True)
    return Check("an allow-listed module is imported", held, validated.stderr.strip()[-300:])


def stdlib_cannot_be_allowed(bench: Bench) -> Iterator[Check]:
    for module in ("os", "subprocess", "builtins", "importlib.util", "pickle"):
        trust = bench.root / f"trust-{module}.yaml"
        shutil.copyfile(bench.trust, trust)
        before = trust.read_bytes()
        problem = refused(invoke("trust", "allow", module, "--trust", trust))
        if not problem and trust.read_bytes() != before:
            problem = "the trust file changed"
        yield Check(f"trust allow {module}", not problem, problem)
        # A trust file edited by hand to allow it is refused when loaded.
        trust.write_text(before.decode() + f"modules: [{module}]\n", encoding="utf-8")
        problem = refused(invoke("recipe", "verify", bench.recipe("stdlib"), "--trust", trust))
        yield Check(f"a trust file listing {module}", not problem, problem)


class _Payload:
    """Unpickling this calls Path.write_text: what a malicious checkpoint does on load."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (Path.write_text, (self.target, "pwned"))


def malicious_checkpoints(bench: Bench) -> Iterator[Check]:
    target = bench.root / "PWNED"
    checkpoint = bench.root / "evil.pt"
    torch.save({"conv.weight": _Payload(target)}, checkpoint)
    # The control: plain pickle semantics run the payload.
    torch.load(checkpoint, weights_only=False)
    yield Check("the malicious checkpoint runs code under plain pickle", target.exists())
    target.unlink(missing_ok=True)
    text = TINY.replace("NAME", "evil-checkpoint").replace("SEED", "0")
    text = text.replace("  train: {epochs: 1, lr: 0.003}\n", "  checkpoint: evil.pt\n")
    path = bench.recipe("evil-checkpoint", text=text)
    before = footprint(bench.workspace)
    outcome = invoke("run", path, "--workspace", bench.workspace)
    problem = refused(outcome)
    if not problem and "weights_only" not in outcome.stderr:
        problem = f"the message does not say why: {outcome.stderr.strip()}"
    if not problem and target.exists():
        problem = "the payload ran"
    if not problem and footprint(bench.workspace) != before:
        problem = "something was written to the workspace or catalog"
    yield Check("run with a pickle checkpoint", not problem, problem)
    # The stored-variant load path reads its bytes with weights_only=True too.
    from compressgate.recipes.models import load_torch
    from compressgate.registry.kernel.errors import CompressgateError

    payload = pickle.dumps({"format": "compressgate.torch/v1", "state_dict": _Payload(target)})
    try:
        load_torch(payload)
        problem = "loaded"
    except CompressgateError as exc:
        problem = "" if "weights_only" in str(exc) else f"refused without saying why: {exc}"
    except pickle.UnpicklingError as exc:
        problem = f"refused with a raw {type(exc).__name__}"
    if not problem and target.exists():
        problem = "the payload ran"
    yield Check("a stored variant that is a pickle", not problem, problem)


def escaping_files(bench: Bench) -> Iterator[Check]:
    outside = bench.root.parent / "outside.lock"
    shutil.copyfile(bench.root / "requirements.lock", outside)
    (bench.root / "link.lock").symlink_to(outside)
    cases = {
        "lock: ../outside.lock": "environment:\n  lock: ../outside.lock\n  strict: true\n",
        "lock: absolute path": f"environment:\n  lock: {outside}\n  strict: true\n",
        "lock: symlink out": "environment:\n  lock: link.lock\n  strict: true\n",
        "checkpoint: ../": None,
    }
    before = footprint(bench.workspace)
    for index, (name, environment) in enumerate(cases.items()):
        text = TINY.replace("NAME", f"escape-{index}").replace("SEED", "0")
        if environment is None:
            text = text.replace("  train: {epochs: 1, lr: 0.003}\n", "  checkpoint: ../w.pt\n")
        else:
            text = text.replace(
                "environment: {lock: requirements.lock, strict: true}\n", environment
            )
        path = bench.root / f"escape-{index}.yaml"
        path.write_text(text, encoding="utf-8")
        sign_bytes(bench, path, f"escape-{index}")
        for command in (
            ("recipe", "validate", path),
            ("run", path, "--workspace", bench.workspace),
        ):
            problem = refused(invoke(*command))
            if not problem and footprint(bench.workspace) != before:
                problem = "something was written"
            yield Check(f"{command[0]} {name}", not problem, problem)


@contextmanager
def _role(admin_url: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL role with a random password and a schema of its own: (URL, password)."""
    import sqlalchemy as sa

    name = f"cg_secret_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_urlsafe(18)}"
    engine = sa.create_engine(admin_url)
    with engine.begin() as conn:
        # Needs CREATEROLE, not superuser; the schema stays the admin's, its use is granted.
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA {name} TO {name}")
    url = sa.engine.make_url(admin_url).set(username=name, password=password)
    rendered = url.render_as_string(hide_password=False)
    try:
        yield f"{rendered}?options=-csearch_path%3D{name}", password
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        engine.dispose()


def _secrets_of(bench: Bench) -> dict[str, str]:
    """Every private key's PEM body and raw bytes (hex), by owner."""
    found = {}
    for owner in ("ml-platform", "ml-lead", "serving"):
        pem = bench.key(owner).read_text()
        body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
        found[f"{owner} PEM"] = body
        raw = load_private_key(bench.key(owner)).key.private_bytes_raw()
        found[f"{owner} raw"] = raw.hex()
    return found


def no_secrets(bench: Bench, postgres: str | None) -> Iterator[Check]:
    """A session that uses every private key and a password-protected catalog URL; then every
    output and every file it wrote is searched for the secrets."""
    outcomes: list[Outcome] = []
    with _role(postgres) if postgres else _unreachable() as (url, password):
        recipe = bench.recipe("secret")
        ws = ["--workspace", bench.root / ".secret", "--catalog", url]
        outcomes.append(cg("submit", recipe, *ws, "--json"))
        run_id = _run_id(outcomes[-1])
        outcomes += [
            cg("catalog", "list", *ws, "--json"),
            cg("catalog", "list", *ws),
            cg("audit", "verify", *ws, "--json"),
            cg("review", "status", *ws),
            cg("catalog", "show", "run-nosuch", *ws),
            cg("run", bench.root / "missing.yaml", *ws),
        ]
        if run_id:
            key = bench.key("ml-lead")
            outcomes += [
                cg("approve", run_id, "--gate", "accuracy", "--key", key, *ws, "--json"),
                cg("report", run_id, *ws, "-o", bench.root / "secret-report.html"),
                cg("report", run_id, *ws, "--format", "json"),
            ]
        # Keys used in the wrong place: every message must leave the key material out.
        for owner in ("ml-platform", "ml-lead"):
            key = bench.key(owner)
            outcomes += [
                cg("recipe", "validate", key),
                cg("recipe", "verify", recipe, "--trust", key),
                cg(
                    "trust",
                    "add",
                    "--trust",
                    bench.root / "t.yaml",
                    "--owner",
                    "x",
                    "--key",
                    key,
                    "--role",
                    "author",
                ),
                cg("catalog", "list", "--catalog", f"sqlite:///{key}"),
                cg("report", "run-x", "--workspace", bench.root / ".secret", "--trust", key),
            ]
        broken = bench.root / "broken.key"
        text = bench.key("ml-lead").read_text()
        broken.write_text(text.replace("-----END PRIVATE KEY-----", ""), encoding="utf-8")
        outcomes.append(cg("recipe", "sign", recipe, "--key", broken))
        values = {**_secrets_of(bench), "database password": password}
        for outcome in outcomes:
            printed = outcome.stdout + outcome.stderr
            leaked = [name for name, value in values.items() if value in printed]
            yield Check(f"{' '.join(outcome.args[:2])} prints no secret", not leaked, str(leaked))
        written = [p for p in bench.root.rglob("*") if p.is_file() and p.suffix != ".key"]
        for path in written:
            data = path.read_bytes()
            leaked = [name for name, value in values.items() if value.encode() in data]
            if leaked:
                yield Check(f"{path.name} holds no secret", False, str(leaked))
        yield Check(f"{len(written)} files written hold no secret", True)
        if postgres:  # with a server, the session did real work: a run, an approval, a report
            report = bench.root / "secret-report.html"
            yield Check("the session ran, approved and reported", report.exists(), str(report))


@contextmanager
def _unreachable() -> Iterator[tuple[str, str]]:
    """Without a server: a URL whose password must not be printed when it fails."""
    password = f"pw-{secrets.token_urlsafe(18)}"
    yield f"postgresql+psycopg://someone:{password}@127.0.0.1:9/nowhere", password


def _run_id(outcome: Outcome) -> str | None:
    import json

    try:
        return str(json.loads(outcome.stdout)["run"]["run_id"])
    except (ValueError, KeyError, TypeError):
        return None


def figures(options: Options) -> list[Figure]:
    bench = make_bench(options.folder)
    groups: list[tuple[str, list[Check]]] = [
        ("forbidden factories/loaders refused, never imported", [*forbidden_code(bench)]),
        ("control: an allow-listed module is imported", [allow_listing_works(bench)]),
        ("the standard library cannot be allow-listed", [*stdlib_cannot_be_allowed(bench)]),
        ("pickle checkpoints refused, payload never run", [*malicious_checkpoints(bench)]),
        ("file references cannot leave the recipe's folder", [*escaping_files(bench)]),
        ("no password or private key printed or written", [*no_secrets(bench, options.postgres)]),
    ]
    found = []
    for name, checks in groups:
        failed = [c for c in checks if not c.held]
        detail = "; ".join(f"{c.name}: {c.detail}" for c in failed[:3])
        found.append(Figure(SECTION, name, len(checks), len(checks) - len(failed), detail))
    return found
