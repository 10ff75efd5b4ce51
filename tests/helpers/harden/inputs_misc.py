"""Inputs (issue 22), group 'misc': see tests/helpers/harden/inputs.py.

- A waiver whose `expires` has no time zone, written into the catalog as a raw row with the
  hash chain recomputed (as `insider.raw_append` writes rows): `review status`, `report`,
  `promote` and `rollback --to` carry on (the waiver does not count), `audit verify` names it.
- Text that steers a terminal (ESC sequences click does not strip, such as OSC 8 hyperlinks and
  C1 CSI, carriage returns, bidi overrides, forged lines, rich markup) in `--reason`, `--actor`,
  a waiver's reason and a recipe's description: no command prints a raw control character,
  run as on a terminal (click's ANSI stripping off), and each shows its escape.
- Workspaces whose names look like URLs (`ws?x=1`, `ws%2e%2e`, `ws#frag`, ...): a run, a
  report and an audit keep everything inside the workspace.
- `ci --base` values that git would take as options (`--output=FILE`, `--upload-pack=...`):
  refused (exit 2), FILE never created.
- Hostile ONNX baselines (a custom-op domain, weights at an absolute path or outside the
  folder, garbage, truncated or empty bytes): `run` refuses them (exit 2) writing nothing.
- `report -o` killed (SIGKILL) before its record, after it and before the rename, at a random
  moment, or with the record failing: the file is absent, or recorded (`audit verify
  --report FILE` exit 0), and the catalog verifies.

Recorded runs are written straight into the catalog (`tests.helpers.catalog.record_run`): the
readers and writers under test are the commands after a run. The runs that do run (in URL-like
workspaces, the ONNX control) have an ONNX baseline: quantized, never trained.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import Bench, Figure, Options, Outcome, footprint, invoke, make_bench
from .insider import raw_append

SECTION = "inputs"

RUN_OK = "run-20261123T100000Z-aaaaaa"  # its gate passes; promoted to production
RUN_EARLIER = "run-20261122T100000Z-dddddd"  # its gate passes too
RUN_FAILED = "run-20261123T110000Z-bbbbbb"  # its gate fails: rejected unless waived
# What a terminal would obey rather than show (C0 and C1 controls but tab and line feed, DEL,
# bidi overrides and isolates); checked on stdout and stderr.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# --- tallies ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Cases of one guarantee: how many held, their exit codes and the first misses."""

    tried: int = 0
    held: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def add(self, name: str, held: bool, code: int, why: str = "") -> None:
        self.tried += 1
        self.held += held
        self.codes[code] += 1
        if not held:
            self.misses.append(f"{name}: exit {code}: {why}"[:300])

    def refusal(self, name: str, out: Outcome, code: int, wrote: bool) -> None:
        """`out` must exit `code` with one clean line, having written nothing."""
        why = "wrote something" if wrote else out.stderr.strip()[-200:]
        self.add(name, out.code == code and out.clean and not wrote, out.code, why)

    def reader(self, name: str, out: Outcome, codes: tuple[int, ...]) -> None:
        """A read command: one of `codes`, no traceback."""
        held = out.code in codes and "Traceback" not in out.stdout + out.stderr
        self.add(name, held, out.code, out.stderr.strip()[-200:])

    def figure(self, name: str, extra: str = "") -> Figure:
        exits = ", ".join(f"exit {c} ×{n}" for c, n in sorted(self.codes.items()))
        detail = "; ".join(x for x in [exits, extra, *self.misses[:3]] if x)
        return Figure(SECTION, name, self.tried, self.held, detail)


def on_terminal(*args: str | Path, env: dict[str, str | None] | None = None) -> Outcome:
    """`invoke`, as on a terminal: click strips no ANSI sequence from what it echoes (it does
    when its output is not a tty, which would hide a raw ESC from the check)."""
    return invoke(*args, env=env, color=True)


# --- the scene: a workspace with recorded runs --------------------------------------------------


@dataclass(frozen=True)
class Scene:
    bench: Bench
    folder: Path
    recipe: Path  # the recorded runs' recipe (beside the bench's trust file)

    @property
    def ws(self) -> tuple[str, Path]:
        return ("--workspace", self.bench.workspace)

    def copy(self, name: str) -> Path:
        """A copy of the workspace to change: the runs, and production -> RUN_OK."""
        target = self.folder / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.bench.workspace, target)
        return target


def prepare(folder: Path) -> Scene:
    from compressgate.registry.catalog.repository import catalog_url
    from tests.helpers.catalog import recipe_file, record_run

    bench = make_bench(folder)
    recipe = recipe_file(bench.root / "digits.yaml")
    url = catalog_url(bench.workspace)
    record_run(url, RUN_EARLIER, 0.96, recipe)
    record_run(url, RUN_OK, 0.97, recipe)
    record_run(url, RUN_FAILED, 0.80, recipe)
    ws = ("--workspace", bench.workspace)
    moved = invoke("promote", f"{RUN_OK}/0/int8", "--alias", "production", *ws)
    assert moved.code == 0, moved.stderr
    return Scene(bench, folder, recipe)


# --- 1. a waiver whose expiry has no time zone --------------------------------------------------


def _naive_waiver(scene: Scene, workspace: Path, expires: str) -> str:
    """Append a waiver of RUN_FAILED's gate, signed by its owner's key, whose `expires` has no
    time zone (what another tool might have written before expiries were checked); its id."""
    import hashlib

    from compressgate.gates.signoff import signoff_envelope
    from compressgate.registry.catalog.repository import Catalog, catalog_url
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.keys import load_private_key

    with Catalog(catalog_url(workspace), create=False) as catalog:
        decision = {d.gate: d for d in catalog.gate_decisions(RUN_FAILED)}["accuracy"]
        recipe_sha256 = catalog.run_info(RUN_FAILED).recipe_sha256
    key = load_private_key(scene.bench.key("ml-lead"))
    good = signoff_envelope(
        decision, key, kind="waiver", recipe_sha256=recipe_sha256, owner="ml-lead",
        reason="known regression", expires=datetime(2099, 12, 31, tzinfo=UTC),
    )  # fmt: skip
    statement = json.loads(good.payload)
    statement["predicate"]["expires"] = expires
    envelope = dsse.sign(json.dumps(statement).encode(), dsse.INTOTO_PAYLOAD_TYPE, [key])
    text = envelope.to_json().decode()
    waiver_id = hashlib.sha256(envelope.to_json()).hexdigest()
    raw_append(
        workspace / "catalog.db",
        [
            (
                "approvals",
                {
                    "id": waiver_id,
                    "run_id": RUN_FAILED,
                    "gate": "accuracy",
                    "variant_id": decision.seeds[0].variant_id,
                    "artifact_sha256": decision.seeds[0].artifact_sha256,
                    "kind": "waiver",
                    "verdict": "fail",
                    "owner": "ml-lead",
                    "keyid": key.public.keyid,
                    "reason": "known regression",
                    "expires": expires,
                    "envelope": text,
                    "recorded_at": "2026-12-02T00:00:00.000000Z",
                },
            )
        ],
    )
    return waiver_id


def naive_waivers(scene: Scene) -> Figure:
    t = Tally()
    for index, expires in enumerate(("2099-12-31", "2099-12-31T23:59:59")):
        work = scene.copy(f"naive-{index}")
        waiver = _naive_waiver(scene, work, expires)
        ws = ("--workspace", work)
        status = invoke("review", "status", RUN_FAILED, *ws, "--json")
        t.reader(f"review status ({expires})", status, (1,))
        try:
            counted = json.loads(status.stdout)["gates"][0]["signoffs"][0]["counts"]
        except (ValueError, LookupError, TypeError):
            counted = None
        t.add(f"the waiver ({expires}) does not count", counted is False, status.code)
        t.reader(f"review status of every run ({expires})", invoke("review", "status", *ws), (0,))
        for fmt in ("md", "html"):
            t.reader(f"report {fmt} ({expires})", invoke("report", RUN_FAILED, "--format", fmt,
                                                         *ws), (0,))  # fmt: skip
        out = scene.folder / f"naive-{index}.md"
        t.reader(f"report -o ({expires})", invoke("report", RUN_FAILED, "--format", "md",
                                                  "-o", out, *ws), (0,))  # fmt: skip
        for name, args in (
            ("rollback --to", ("rollback", "production", "--to", f"{RUN_FAILED}/0/int8")),
            ("promote", ("promote", f"{RUN_FAILED}/0/int8", "--alias", "staging")),
        ):
            before = footprint(work)
            refused = invoke(*args, *ws)
            t.refusal(f"{name} ({expires})", refused, 1, footprint(work) != before)
        audited = invoke("audit", "verify", "--skip-artifacts", *ws)
        named = f"waiver {waiver[:12]} of gate 'accuracy'" in audited.stderr
        t.add(
            f"audit verify names the waiver ({expires})",
            audited.code == 3 and named and "is not an instant" in audited.stderr,
            audited.code,
            audited.stderr.strip()[-200:],
        )
    return t.figure("a waiver expiring without a time zone: readers carry on, audit names it")


# --- 2. text that steers a terminal -------------------------------------------------------------

FRAGMENTS = (
    "\x1b]8;;https://evil.example\x07",  # an OSC 8 hyperlink: click's stripping leaves it
    "\x1b]0;title\x07",  # sets the window title
    "\x1b[2J",  # clears the screen (stripped by click off a terminal, not on one)
    "\x1bc",  # resets the terminal
    "\x9b31m",  # a C1 CSI
    "\r",
    "\x08\x08",
    "\u202e",
    "\u2066",
    "\x00",
    "\x7f",
    "\n#99 2026-01-01T00:00:00Z promote production -> forged",
    "[link=https://evil.example]x[/link]",
)


def payloads(count: int, seed: int) -> list[str]:
    """`count` texts, each some of FRAGMENTS between words; the first holds every one."""
    rng = random.Random(seed)
    found = ["every " + " ".join(FRAGMENTS) + " end"]
    while len(found) < count:
        found.append("r " + " ".join(rng.sample(FRAGMENTS, 3)) + " end")
    return found[:count]


def _steering(text: str) -> list[str]:
    return sorted({ascii(c)[1:-1] for c in RAW.findall(text)})


def _shown_escapes(out: str, text: str) -> list[str]:
    """The steering characters of `text` whose escape `out` does not show."""
    return [e for e in _steering(text) if e not in out]


@dataclass
class Shown:
    """Checks the outcomes of one hostile text: no raw control, and (`shows`) its escapes."""

    tally: Tally
    index: int
    text: str

    def __call__(
        self, name: str, out: Outcome, codes: tuple[int, ...] = (0,), shows: bool = False
    ) -> None:
        raw = _steering(out.stdout + out.stderr)
        hidden = _shown_escapes(out.stdout, self.text) if shows else []
        why = f"raw {raw}" if raw else f"escapes not shown {hidden}" if hidden else ""
        held = out.code in codes and not raw and not hidden and "Traceback" not in out.stderr
        self.tally.add(f"#{self.index} {name}", held, out.code, why or out.stderr.strip()[-200:])


def terminal_text(scene: Scene, options: Options) -> list[Figure]:
    from compressgate.registry.catalog.repository import catalog_url
    from tests.helpers.catalog import recipe_file, record_run

    t, explain = Tally(), Tally()
    work = scene.copy("escapes")
    ws = ("--workspace", work)
    texts = payloads(options.count(24, least=3), options.seed)
    for index, text in enumerate(texts):
        check = Shown(t, index, text)
        alias = f"esc-{index}"
        check("promote", on_terminal("promote", f"{RUN_EARLIER}/0/int8", "--alias", alias, *ws))
        moved = on_terminal("promote", f"{RUN_OK}/0/int8", "--alias", alias, "--reason", text,
                            "--actor", text, *ws)  # fmt: skip
        check("promote --reason --actor", moved, shows=True)
        check("alias history", on_terminal("alias", "history", alias, *ws), shows=True)
        as_json = on_terminal("alias", "history", alias, *ws, "--json")
        check("alias history --json", as_json)
        try:
            same = json.loads(as_json.stdout)[-1]["reason"] == text
        except (ValueError, LookupError, TypeError):
            same = False
        t.add(f"#{index} --json gives the reason back", same, as_json.code)
        check("rollback --reason", on_terminal("rollback", alias, "--reason", text, *ws))
        unknown = on_terminal("promote", text, "--alias", alias, *ws)
        check("promote an unknown variant", unknown, (2, 4))  # malformed, or not found
        if index == 0:  # a waiver's reason: the report shows it
            key = scene.bench.key("ml-lead")
            waived = on_terminal("waive", RUN_FAILED, "--gate", "accuracy", "--reason", text,
                                 "--key", key, *ws)  # fmt: skip
            check("waive --reason", waived)
        # A recipe whose description holds the text (YAML's escapes spell it), recorded.
        recipe = recipe_file(scene.bench.root / f"described-{index}.yaml")
        body = recipe.read_text(encoding="utf-8").replace(
            "owners: [ml-platform]}", f"owners: [ml-platform], description: {json.dumps(text)}}}"
        )
        recipe.write_text(body, encoding="utf-8")
        run_id = f"run-20261124T{index:06d}Z-cccccc"
        record_run(catalog_url(work), run_id, 0.97, recipe)
        for args in (
            ("catalog", "list"),
            ("catalog", "show", run_id),
            ("catalog", "lineage", f"{run_id}/0/int8"),
            ("review", "status", run_id),
            ("report", run_id, "--format", "card"),
            ("report", run_id, "--format", "md"),
            ("report", run_id, "--format", "html"),
            ("report", run_id, "--format", "json"),
            ("report", RUN_FAILED, "--format", "md"),
        ):
            check(" ".join(args[:3]), on_terminal(*args, *ws))
        for args in (("recipe", "explain", recipe), ("recipe", "validate", "--no-power", recipe)):
            out = on_terminal(*args)
            raw = _steering(out.stdout + out.stderr)
            explain.add(f"#{index} {args[1]}", out.code in (0, 2) and not raw, out.code, str(raw))
    return [
        t.figure(f"--reason/--actor/description: no raw control on a terminal ({len(texts)})"),
        explain.figure("recipe explain/validate: a description's controls not printed raw"),
    ]


# --- 3. workspaces named like URLs --------------------------------------------------------------

URL_LIKE = ("ws?x=1", "ws%2e%2e", "ws#frag", "ws%2f..%2fup", "ws%41", "ws?mode=memory&cache=shared")


def url_like_workspaces(scene: Scene, options: Options) -> Figure:
    """Each workspace gets a run (of an ONNX baseline: quick, no training), a report written
    into it and recorded, and an audit of both."""
    t = Tally()
    recipe = standard_recipe(scene.bench)
    for index, name in enumerate(URL_LIKE[: options.count(len(URL_LIKE), least=3)]):
        folder = scene.folder / f"urls-{index}"  # nothing else in it: a stray file shows
        folder.mkdir()
        workspace = folder / name
        ws = ("--workspace", workspace)
        ran = invoke("run", recipe, *ws, "--json")
        try:
            run_id = str(json.loads(ran.stdout)["run_id"])
        except (ValueError, LookupError, TypeError):
            t.add(f"{name}: run", False, ran.code, ran.stderr.strip()[-200:])
            continue
        report = workspace / "report.md"
        codes = [
            ran.code,
            invoke("catalog", "list", *ws).code,
            invoke("report", run_id, "--format", "md", "-o", report, *ws).code,
            invoke("audit", "verify", "--report", report, *ws).code,
        ]
        outside = sorted(p.name for p in folder.iterdir() if p.name != name)
        inside = (workspace / "catalog.db").is_file() and (workspace / "objects").is_dir()
        held = codes == [0, 0, 0, 0] and not outside and inside
        t.add(name, held, max(codes), f"exits {codes}, beside it {outside}, inside {inside}")
    return t.figure("URL-like workspace names: catalog, store and report stay inside")


# --- 4. git options in ci --base ----------------------------------------------------------------


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def git_options(scene: Scene) -> Figure:
    t = Tally()
    repo = scene.folder / "repo"
    repo.mkdir()
    shutil.copy(scene.bench.recipe("git"), repo / "git.yaml")
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example", "HOME": str(scene.folder)}  # fmt: skip
    for command in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "recipe"]):
        subprocess.run(["git", *command], cwd=repo, env={**os.environ, **git}, check=True)
    out = scene.folder / "INJECTED"
    cases = [
        [f"--base=--output={out}"],
        ["--base", f"--output={out}"],
        [f"--base=-o{out}"],
        [f"--base=--upload-pack=touch {out}"],
        ["--base", f"main --output={out}"],
        ["--base", f"main:--output={out}"],
        ["--base", "main\x1b[2J"],
        ["--base=--ext-diff"],
        ["--base", "--no-index"],
        ["git.yaml", f"--base=--output={out}"],
    ]
    with working_directory(repo):
        for args in cases:
            before = footprint(scene.bench.workspace, [repo])
            result = invoke("ci", *args, "--workspace", scene.bench.workspace)
            wrote = footprint(scene.bench.workspace, [repo]) != before or out.exists()
            t.refusal(" ".join(args), result, 2, wrote)
            out.unlink(missing_ok=True)
    return t.figure("git options as ci --base: exit 2, no file written")


# --- 5. hostile ONNX baselines ------------------------------------------------------------------

ONNX_RECIPE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: NAME, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  onnx: FILE
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [0]
stages:
  - {name: int8, kind: quantize, method: dynamic}
evaluators:
  - kind: accuracy
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.0}
"""


def onnx_model(domain: str = "", location: str | None = None) -> bytes:
    """logits = flatten(x) @ W + B for the digits' 1×8×8 inputs; the last node in `domain`,
    W's data at `location` when given."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((64, 10), 0.01, np.float32), "W")
    if location is not None:
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "2560")):
            entry = weights.external_data.add()
            entry.key, entry.value = k, v
    last = ("Steal", domain) if domain else ("Add", "")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1, name="flatten"),
            helper.make_node("MatMul", ["f", "W"], ["m"], name="matmul"),
            helper.make_node(last[0], ["m", "B"], ["logits"], domain=last[1], name="add"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weights, numpy_helper.from_array(np.zeros(10, np.float32), "B")],
    )
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    proto: onnx.ModelProto = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    return proto.SerializeToString()


def standard_recipe(bench: Bench) -> Path:
    """A signed recipe whose baseline is a standard ONNX model (`onnx_model()`)."""
    path = bench.root / "standard.yaml"
    if not path.exists():
        (bench.root / "standard.onnx").write_bytes(onnx_model())
        text = ONNX_RECIPE.replace("NAME", "standard").replace("FILE", "standard.onnx")
        bench.recipe("standard", text=text)
    return path


def sign_with(bench: Bench, path: Path, files: list[str]) -> None:
    """Sign a manifest's bytes and `files` beside it as they are, unchecked (as a holder of an
    author key could): what is refused is the content, not a missing signature."""
    from compressgate.recipes.signing import RECIPE_PREDICATE_TYPE, envelope_path
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.kernel.keys import load_private_key

    subjects = [(name, sha256_bytes((path.parent / name).read_bytes())) for name in files]
    payload = dsse.statement(
        [(path.name, sha256_bytes(path.read_bytes())), *subjects],
        RECIPE_PREDICATE_TYPE,
        {"recipe": {"name": path.stem, "version": 1}},
    )
    key = load_private_key(bench.key("ml-platform"))
    envelope_path(path).write_bytes(dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [key]).to_json())


def hostile_onnx(scene: Scene) -> list[Figure]:
    bench = scene.bench
    good = onnx_model()
    cases: dict[str, tuple[bytes, list[str]]] = {
        "custom-op domain": (onnx_model(domain="evil.custom"), []),
        "external data at /etc/passwd": (onnx_model(location="/etc/passwd"), []),
        "external data at ../x.bin": (onnx_model(location="../x.bin"), []),
        "external data through a link out": (onnx_model(location="out.bin"), ["out.bin"]),
        "garbage bytes": (b"\x08\x07garbage" * 64, []),
        "truncated": (good[: len(good) // 2], []),
        "empty": (b"", []),
    }
    (scene.folder / "x.bin").write_bytes(b"\0" * 2560)
    (bench.root / "out.bin").symlink_to(scene.folder / "x.bin")
    workspace = bench.root / ".onnx-ws"
    t, control = Tally(), Tally()
    for index, (name, (content, extra)) in enumerate(cases.items()):
        model = f"hostile-{index}.onnx"
        (bench.root / model).write_bytes(content)
        recipe = bench.root / f"hostile-{index}.yaml"
        text = ONNX_RECIPE.replace("NAME", f"hostile-{index}").replace("FILE", model)
        recipe.write_text(text, encoding="utf-8")
        sign_with(bench, recipe, ["requirements.lock", model, *extra])
        before = footprint(workspace)
        out = invoke("run", recipe, "--workspace", workspace)
        t.refusal(name, out, 2, footprint(workspace) != before)
    ran = invoke("run", standard_recipe(bench), "--workspace", workspace)
    control.add("a standard ONNX baseline runs", ran.code == 0, ran.code, ran.stderr[-200:])
    return [
        t.figure("hostile ONNX baselines: exit 2 before anything is recorded"),
        control.figure("control: a standard ONNX baseline runs"),
    ]


# --- 6. report -o killed ------------------------------------------------------------------------

# The child: the console script's main, with Catalog.record_report patched to be killed
# (SIGKILL, nothing runs after it) before the record or after it, before the rename.
CHILD = """\
import os, signal, sys
from compressgate.registry.catalog.repository import Catalog

point = sys.argv[1]
record = Catalog.record_report

def killed(self, entry):
    if point == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    found = record(self, entry)
    if point == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return found

if point in ("before", "after"):
    Catalog.record_report = killed
sys.argv = ["compressgate", *sys.argv[2:]]
from compressgate.registry.cli import main
main()
"""


def _child(point: str, argv: list[str | Path], kill_after: float | None = None) -> int:
    """Run `compressgate ARGV` in a child (killed at `point`, or after `kill_after` s)."""
    command = [sys.executable, "-c", CHILD, point, *map(str, argv)]
    env = {**os.environ, "COLUMNS": "200"}
    for name in ("COMPRESSGATE_TRUST", "COMPRESSGATE_WORKSPACE", "COMPRESSGATE_CATALOG"):
        env.pop(name, None)
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is not None:
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
    child.wait(timeout=300)
    return child.returncode


@contextmanager
def _failing_record() -> Iterator[None]:
    """In this process: the catalog fails the record's write (as a full disk would)."""
    import sqlite3

    import sqlalchemy as sa

    from compressgate.registry.catalog.connection import CatalogConnection

    append = CatalogConnection._append

    def refuse(self: Any, conn: Any, rows: Any) -> Any:
        if any(getattr(model, "__tablename__", "") == "reports" for model, _ in rows):
            raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("disk is full"))
        return append(self, conn, rows)

    CatalogConnection._append = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        CatalogConnection._append = append  # type: ignore[method-assign]


def killed_reports(scene: Scene, options: Options) -> Figure:
    """Each trial reports a run of its own (a report whose bytes are recorded already is not
    recorded again), killed or failing; then what is left must hold."""
    from compressgate.registry.catalog.repository import catalog_url
    from tests.helpers.catalog import record_run

    t = Tally()
    work = scene.copy("reports")
    ws = ("--workspace", work)
    rng = random.Random(options.seed)
    window: list[float] = []  # how long an unkilled report takes, about

    def report_args(run_id: str, out: Path) -> list[str | Path]:
        return ["report", run_id, "--format", "html", "-o", out, *ws]

    def at(point: str) -> Callable[[str, Path], int]:
        def trial(run_id: str, out: Path) -> int:
            start = time.perf_counter()
            code = _child(point, report_args(run_id, out))
            window.append(time.perf_counter() - start)
            return code

        return trial

    def at_random(run_id: str, out: Path) -> int:
        # The first half is mostly imports: kills land in the second, or just after the end.
        delay = rng.uniform(0.5, 1.1) * max(window)
        return _child("none", report_args(run_id, out), kill_after=delay)

    def failing(run_id: str, out: Path) -> int:
        with _failing_record():
            refused = invoke(*report_args(run_id, out))
        held = refused.code == 4 and refused.clean and not out.exists()
        t.add("the record fails: exit 4, one line, no file", held, refused.code, refused.stderr)
        return refused.code

    trials: list[tuple[str, Callable[[str, Path], int]]] = [
        ("killed before the record", at("before")),
        ("killed after the record, before the rename", at("after")),
        ("the record fails", failing),
    ]
    trials += [(f"killed at random #{i}", at_random) for i in range(options.count(10))]
    recipe = scene.recipe
    for index, (name, trial) in enumerate(trials):
        run_id = f"run-20261125T{index:06d}Z-eeeeee"
        record_run(catalog_url(work), run_id, 0.97, recipe)
        out = scene.folder / f"report-{index}.html"
        code = trial(run_id, out)
        if out.exists():
            verified = invoke("audit", "verify", "--skip-artifacts", "--report", out, *ws)
            state = f"present, audit verify --report exit {verified.code}"
            held = verified.code == 0
        else:
            chain = invoke("audit", "verify", "--skip-artifacts", *ws)
            state = f"absent, audit verify exit {chain.code}"
            held = chain.code == 0
        t.add(name, held, code, state)
    kept = sum(1 for i in range(len(trials)) if (scene.folder / f"report-{i}.html").exists())
    return t.figure(
        "report -o killed or failing: no file, or a recorded one that verifies",
        f"{kept} of {len(trials)} reports left a file",
    )


# --- the figures --------------------------------------------------------------------------------


def figures(options: Options) -> list[Figure]:
    scene = prepare(options.folder)
    out = [naive_waivers(scene)]
    out += terminal_text(scene, options)
    out.append(url_like_workspaces(scene, options))
    out.append(git_options(scene))
    out += hostile_onnx(scene)
    out.append(killed_reports(scene, options))
    return out
