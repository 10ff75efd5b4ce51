"""Bad input (issue 8): malformed manifests, trust files, keys, envelopes and CLI arguments.

Every case must be refused with the exit code of its fault (2 bad input, 3 integrity), one
line of message, no traceback, and nothing written: the catalog's rows and the files under the
workspace, the recipe folder and the keys folder are the same before and after.

Manifests are made by hypothesis: each takes the valid TINY recipe and applies one mutation
(a wrong type, a missing or unknown key, a number out of range, a value outside an enum, a
reference to nothing, a duplicate, broken YAML syntax, bytes that are not UTF-8, a control
character, a document too deep or expanded by aliases, a long integer, a YAML tag), so exactly
one problem line is expected, and the line must name the field or the fault. They are checked
in-process (click's CliRunner on `compressgate.registry.cli:cli`) through `recipe validate`, a
sample also
through `run` after signing the malformed bytes as they are (a correctly signed malformed
manifest must still exit 2 with no catalog row and no artifact), and a sample through the
installed console script in a subprocess.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .common import (
    TINY,
    Bench,
    Figure,
    Footprint,
    Options,
    cg,
    footprint,
    make_bench,
    sign_bytes,
    traceback_of,
)
from .common import invoke as run_in_process

SECTION = "bad input"
BASE_NAME = "bad"  # malformed manifests are written as ROOT/bad.yaml, beside the trust file

Path_ = tuple[str | int, ...]


# --- the cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One malformed input: what it is, its bytes, and what its refusal must say."""

    family: str
    name: str
    data: bytes
    says: tuple[str, ...] = ()  # fragments the one message line must hold
    code: int = 2  # exit code of `recipe validate`
    run_code: int = 2  # exit code of `run` once the bytes are signed as they are


_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml, to generate cases quickly


@functools.cache
def _base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(
        TINY.replace("NAME", BASE_NAME).replace("SEED", "0"), Loader=_FAST
    )
    return data


def base_data() -> dict[str, Any]:
    """TINY as data (a fresh copy each call)."""
    return copy.deepcopy(_base())


def dump(data: Any) -> str:
    """YAML text for `data`, by libyaml when it reads back the same (else the project's)."""
    fast = getattr(yaml, "CSafeDumper", None)
    if fast is not None:
        text = yaml.dump(data, Dumper=fast, sort_keys=False, allow_unicode=True)
        if _same(yaml.load(text, Loader=_FAST), data):
            return text
    from compressgate.recipes.yamldoc import dump_yaml

    return dump_yaml(data)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@functools.cache
def base_text() -> str:
    return dump(base_data())


def shown(path: Path_) -> str:
    """`('stages', 0, 'sparsity')` -> `stages[0].sparsity`, as messages print it."""
    from compressgate.recipes.yamldoc import format_path

    return format_path(path)


def _get(data: Any, path: Path_) -> Any:
    for step in path:
        data = data[step]
    return data


def _set(data: Any, path: Path_, value: Any) -> Any:
    out = copy.deepcopy(data)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _delete(data: Any, path: Path_) -> Any:
    out = copy.deepcopy(data)
    del _get(out, path[:-1])[path[-1]]
    return out


def _case(family: str, name: str, data: Any, *says: str, run_code: int = 2) -> Case:
    text = dump(data)
    assert _same(yaml.load(text, Loader=_FAST), data), f"{name}: the mutation does not round-trip"
    return Case(family, name, text.encode("utf-8"), tuple(says), run_code=run_code)


# Every typed value of TINY: its path, its type, and whether null is a valid value for it.
FIELDS: list[tuple[Path_, str, bool]] = [
    (("apiVersion",), "str", False),
    (("kind",), "str", False),
    (("metadata",), "map", False),
    (("metadata", "name"), "str", False),
    (("metadata", "version"), "int", False),
    (("metadata", "owners"), "list", False),
    (("metadata", "owners", 0), "str", False),
    (("environment",), "map", False),
    (("environment", "lock"), "str", False),
    (("environment", "strict"), "bool", False),
    (("model",), "map", False),
    (("model", "factory"), "str", True),
    (("model", "args"), "map", False),
    (("model", "train"), "map", True),
    (("model", "train", "epochs"), "int", False),
    (("model", "train", "lr"), "float", False),
    (("data",), "map", False),
    (("data", "loader"), "str", False),
    (("seeds",), "list", False),
    (("seeds", 0), "int", False),
    (("stages",), "list", False),
    (("stages", 0), "map", False),
    (("stages", 0, "name"), "str", False),
    (("stages", 0, "kind"), "str", False),
    (("stages", 0, "method"), "str", False),
    (("stages", 0, "scope"), "str", False),
    (("stages", 0, "sparsity"), "float", False),
    (("stages", 0, "rounds"), "int", False),
    (("stages", 0, "finetune_epochs"), "int", False),
    (("stages", 1), "map", False),
    (("stages", 1, "name"), "str", False),
    (("stages", 1, "kind"), "str", False),
    (("stages", 1, "method"), "str", False),
    (("stages", 2, "name"), "str", False),
    (("stages", 2, "kind"), "str", False),
    (("evaluators",), "list", False),
    (("evaluators", 0), "map", False),
    (("evaluators", 0, "kind"), "str", False),
    (("evaluators", 1, "kind"), "str", False),
    (("gates",), "list", False),
    (("gates", 0), "map", False),
    (("gates", 0, "name"), "str", False),
    (("gates", 0, "owner"), "str", False),
    (("gates", 0, "metric"), "str", False),
    (("gates", 0, "rule"), "str", False),
    (("gates", 0, "min"), "float", True),
]

_words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    max_size=16,
)
_keys = st.text(alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=8)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_lists = st.lists(st.integers(-5, 5), max_size=3)
_maps = st.dictionaries(_keys, st.integers(-5, 5), min_size=1, max_size=2)

WRONG: dict[str, st.SearchStrategy[Any]] = {
    "str": st.one_of(st.integers(), _finite, st.booleans(), _lists, _maps),
    "int": st.one_of(_words, _finite.filter(lambda x: not x.is_integer()), st.booleans(), _lists),
    "float": st.one_of(_words, st.booleans(), _lists, _maps),
    "bool": st.one_of(_words, st.integers(), _finite, _lists, _maps),
    "list": st.one_of(_words, st.integers(), _finite, st.booleans(), _maps),
    "map": st.one_of(_words, st.integers(), _finite, st.booleans(), _lists),
}


@st.composite
def wrong_types(draw: st.DrawFn) -> Case:
    path, kind, nullable = draw(st.sampled_from(FIELDS))
    options = WRONG[kind] if nullable else st.one_of(WRONG[kind], st.none())
    value = draw(options)
    name = f"{shown(path)} = {json.dumps(value)[:40]}"
    return _case("wrong type", name, _set(base_data(), path, value), shown(path))


# Required keys, and the path the message names when each is missing.
REQUIRED: list[tuple[Path_, str]] = [
    (("apiVersion",), "apiVersion: required"),
    (("kind",), "kind: required"),
    (("metadata",), "metadata: required"),
    (("metadata", "name"), "metadata.name: required"),
    (("metadata", "version"), "metadata.version: required"),
    (("metadata", "owners"), "metadata.owners: required"),
    (("environment",), "environment: required"),
    (("environment", "lock"), "environment.lock: required"),
    (("model",), "model: required"),
    (("model", "factory"), "model: give exactly one of 'factory' or 'onnx'"),
    (("model", "train"), "model: the baseline has no weights"),
    (("model", "train", "epochs"), "model.train.epochs: required"),
    (("data",), "data: required"),
    (("data", "loader"), "data.loader: required"),
    (("stages",), "stages: required"),
    (("stages", 0, "name"), "stages[0].name: required"),
    (("stages", 0, "kind"), "stages[0].kind: required"),
    (("stages", 0, "method"), "stages[0].method: required"),
    (("stages", 0, "sparsity"), "stages[0].sparsity: required"),
    (("stages", 1, "name"), "stages[1].name: required"),
    (("stages", 1, "kind"), "stages[1].kind: required"),
    (("stages", 1, "method"), "stages[1].method: required"),
    (("stages", 2, "name"), "stages[2].name: required"),
    (("stages", 2, "kind"), "stages[2].kind: required"),
    (("evaluators", 0, "kind"), "evaluators[0].kind: required"),
    (("evaluators", 1, "kind"), "evaluators[1].kind: required"),
    (("gates", 0, "name"), "gates[0].name: required"),
    (("gates", 0, "owner"), "gates[0].owner: required"),
    (("gates", 0, "metric"), "gates[0].metric: required"),
    (("gates", 0, "rule"), "gates[0].rule: required"),
    (("gates", 0, "min"), "gates[0]: give 'max', 'min' or both"),
]


@st.composite
def missing_keys(draw: st.DrawFn) -> Case:
    path, says = draw(st.sampled_from(REQUIRED))
    return _case("missing key", shown(path), _delete(base_data(), path), says)


# The mappings the models check (not `model.args`, whose keys are the factory's).
MAPPINGS: list[Path_] = [
    (),
    ("metadata",),
    ("environment",),
    ("model",),
    ("model", "train"),
    ("data",),
    ("stages", 0),
    ("stages", 1),
    ("stages", 2),
    ("evaluators", 0),
    ("evaluators", 1),
    ("gates", 0),
]


@st.composite
def unknown_keys(draw: st.DrawFn) -> Case:
    where = draw(st.sampled_from(MAPPINGS))
    key = "x_" + draw(_keys)  # no field of any model starts with `x_`
    value = draw(st.one_of(st.integers(), _words, st.booleans(), st.none(), _lists))
    data = base_data()
    _get(data, where)[key] = value
    return _case(
        "unknown key", f"{shown((*where, key))}", data, shown((*where, key)), "unknown key"
    )


def _outside(low: float | None, high: float | None, *, integer: bool) -> st.SearchStrategy[Any]:
    """Numbers below `low` or above `high` (each bound itself excluded from the valid range
    or included, as given: the caller passes the first invalid value on each side)."""
    sides: list[st.SearchStrategy[Any]] = []
    if integer:
        if low is not None:
            sides.append(st.integers(max_value=int(low)))
        if high is not None:
            sides.append(st.integers(min_value=int(high), max_value=10**30))
    else:
        if low is not None:
            sides.append(st.floats(max_value=low, allow_nan=False, allow_infinity=False))
        if high is not None:
            sides.append(st.floats(min_value=high, allow_nan=False, allow_infinity=False))
        sides.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(sides)


# Each number with its first invalid value below and above (None: unbounded on that side).
RANGES: list[tuple[Path_, float | None, float | None, bool]] = [
    (("metadata", "version"), 0, None, True),
    (("model", "train", "epochs"), 0, 10_001, True),
    (("model", "train", "lr"), 0.0, 10.0, False),
    (("seeds", 0), -1, 2**32, True),
    (("stages", 0, "sparsity"), 0.0, 1.0, False),
    (("stages", 0, "rounds"), 0, 101, True),
    (("stages", 0, "finetune_epochs"), -1, 1001, True),
    (("gates", 0, "min"), None, None, False),  # any number, but not NaN or infinite
]


@st.composite
def out_of_range(draw: st.DrawFn) -> Case:
    path, low, high, integer = draw(st.sampled_from(RANGES))
    value = draw(_outside(low, high, integer=integer))
    data = _set(base_data(), path, value)
    text = dump(data)
    if isinstance(value, float) and math.isnan(value):  # NaN != NaN: compare the text instead
        return Case("out of range", f"{shown(path)} = nan", text.encode(), (shown(path),))
    return _case("out of range", f"{shown(path)} = {value!r}", data, shown(path))


ENUMS: list[tuple[Path_, tuple[str, ...]]] = [
    (("apiVersion",), ("compressgate/v1",)),
    (("kind",), ("Recipe",)),
    (("stages", 0, "kind"), ("distill", "prune", "quantize", "export")),
    (("stages", 0, "method"), ("magnitude", "structured")),
    (("stages", 0, "scope"), ("global", "layer")),
    (("stages", 1, "kind"), ("distill", "prune", "quantize", "export")),
    (("stages", 1, "method"), ("dynamic", "static", "qat")),
    (("stages", 1, "calibration"), ("minmax", "entropy", "percentile")),
    (("stages", 2, "kind"), ("distill", "prune", "quantize", "export")),
    (("evaluators", 0, "kind"), ()),  # filled below from the evaluator registry
    (("evaluators", 1, "kind"), ()),
    (("gates", 0, "rule"), ("non_inferior", "bound", "relative")),
    (("gates", 0, "seeds"), ("every", "mean", "worst")),
    (("gates", 0, "approval"), ("none", "required")),
    (("gates", 0, "basis"), ("interval", "estimate")),
]


def _evaluator_kinds() -> tuple[str, ...]:
    from compressgate.recipes.evaluation import EVALUATOR_KINDS

    return tuple(EVALUATOR_KINDS)


@st.composite
def bad_enums(draw: st.DrawFn) -> Case:
    path, allowed = draw(st.sampled_from(ENUMS))
    allowed = allowed or _evaluator_kinds()
    value = draw(st.one_of(_words, st.sampled_from(allowed).map(str.upper)))
    if value in allowed:
        value += "x"
    return _case(
        "bad enum", f"{shown(path)} = {value!r}", _set(base_data(), path, value), shown(path)
    )


_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)


@st.composite
def bad_references(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(
            [
                "gate-after",
                "gate-owner",
                "recipe-owner",
                "factory",
                "loader",
                "lock-missing",
                "lock-outside",
                "lock-absolute",
                "checkpoint",
                "metric",
            ]
        )
    )
    data = base_data()
    name = draw(_NAMES)
    run_code = 2
    if kind == "gate-after":
        name = name if name not in ("prune", "int8", "export") else name + "-x"
        path, says = ("gates", 0, "after"), f"no stage is named '{name}'"
    elif kind == "gate-owner":
        name = name if name not in ("ml-platform", "ml-lead", "serving") else name + "-x"
        path, says = ("gates", 0, "owner"), f"owner '{name}' is not in the trust file"
    elif kind == "recipe-owner":
        name = name if name not in ("ml-platform", "ml-lead", "serving") else name + "-x"
        path, says = ("metadata", "owners", 0), f"owner '{name}' is not in the trust file"
        run_code = 3  # the author's signature is not by one of the recipe's owners
    elif kind in ("factory", "loader"):
        module = "compressgate.recipes.examples.no_" + name.replace("-", "_")
        name = f"{module}:build"
        path = ("model", "factory") if kind == "factory" else ("data", "loader")
        says = f"module '{module}'"
    elif kind == "lock-missing":
        name = f"{name}.lock"
        path, says = ("environment", "lock"), f"file '{name}' not found"
    elif kind == "lock-outside":
        name = f"../{name}.lock"
        path, says = ("environment", "lock"), "escapes the manifest's folder"
    elif kind == "lock-absolute":
        name = f"/{name}.lock"
        path, says = ("environment", "lock"), "must be a relative path"
    elif kind == "checkpoint":
        name = f"{name}.pt"
        path, says = ("model", "checkpoint"), f"file '{name}' not found"
    else:
        name = "x_" + name.replace("-", "_")
        path, says = ("gates", 0, "metric"), f"no evaluator gives the metric '{name}'"
    data = _set(data, path, name)
    return _case("bad reference", f"{kind}: {name}", data, shown(path), says, run_code=run_code)


@st.composite
def duplicates(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["stage", "seed", "owner", "gate", "evaluator"]))
    data = base_data()
    if kind == "stage":
        first, second = sorted(
            draw(st.lists(st.integers(0, 2), min_size=2, max_size=2, unique=True))
        )
        data["stages"][second]["name"] = data["stages"][first]["name"]
        path: Path_ = ("stages", second, "name")
        says = "duplicate stage name"
    elif kind == "seed":
        seed = draw(st.integers(0, 2**32 - 1))
        data["seeds"] = [seed, seed]
        path, says = ("seeds", 1), f"seed {seed} is listed twice"
    elif kind == "owner":
        data["metadata"]["owners"] = ["ml-platform", "ml-platform"]
        path, says = ("metadata", "owners", 1), "is listed twice"
    elif kind == "gate":
        data["gates"].append(copy.deepcopy(data["gates"][0]))
        path, says = ("gates", 1, "name"), "duplicate gate name"
    else:
        index = draw(st.integers(0, 1))
        data["evaluators"].append(copy.deepcopy(data["evaluators"][index]))
        path, says = ("evaluators", 2, "kind"), "is declared twice"
    return _case("duplicate", kind, data, shown(path), says)


_LINE = re.compile(r"^(?P<lead> *(?:- )?)(?P<key>[A-Za-z_][A-Za-z0-9_]*): (?P<value>\S.*)$")


def _scalar_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines()) if _LINE.match(line)]


def _edit_line(text: str, index: int, edit: Callable[[re.Match[str]], str]) -> str:
    lines = text.splitlines()
    match = _LINE.match(lines[index])
    assert match is not None
    lines[index] = edit(match)
    return "\n".join(lines) + "\n"


SYNTAX: dict[str, Callable[[re.Match[str]], str]] = {
    "unclosed [": lambda m: f"{m['lead']}{m['key']}: [{m['value']}",
    "unclosed {": lambda m: f"{m['lead']}{m['key']}: {{{m['value']}",
    'unclosed "': lambda m: f'{m["lead"]}{m["key"]}: "{m["value"]}',
    "unclosed '": lambda m: f"{m['lead']}{m['key']}: '{m['value']}",
    "second colon": lambda m: f"{m['lead']}{m['key']}: {m['value']}: x",
    "reserved @": lambda m: f"{m['lead']}{m['key']}: @{m['value']}",
    "reserved `": lambda m: f"{m['lead']}{m['key']}: `{m['value']}",
    "undefined alias": lambda m: f"{m['lead']}{m['key']}: *nowhere",
    "tab indent": lambda m: "\t" + m.group(0),
}


@st.composite
def bad_syntax(draw: st.DrawFn) -> Case:
    text = base_text()
    index = draw(st.sampled_from(_scalar_lines(text)))
    kind = draw(st.sampled_from(sorted(SYNTAX)))
    broken = _edit_line(text, index, SYNTAX[kind])
    return Case("YAML syntax", f"{kind} at line {index + 1}", broken.encode(), ("invalid YAML",))


@st.composite
def duplicate_keys(draw: st.DrawFn) -> Case:
    text = base_text()
    index = draw(st.sampled_from(_scalar_lines(text)))
    lines = text.splitlines()
    match = _LINE.match(lines[index])
    assert match is not None
    again = " " * len(match["lead"]) + f"{match['key']}: {match['value']}"
    lines.insert(index + 1, again)
    broken = "\n".join(lines) + "\n"
    return Case(
        "duplicate key", f"{match['key']} at line {index + 2}", broken.encode(), ("duplicate key",)
    )


BAD_BYTES = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xc3(", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]


@st.composite
def not_utf8(draw: st.DrawFn) -> Case:
    raw = base_text().encode()
    kind = draw(st.sampled_from(["insert", "utf-16", "utf-32", "latin-1"]))
    if kind == "insert":
        at = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from(BAD_BYTES))
        return Case("not UTF-8", f"{bad!r} at byte {at}", raw[:at] + bad + raw[at:], ("not UTF-8",))
    if kind == "latin-1":
        text = base_text().replace("kind: Recipe", "kind: Recipe # é", 1)
        return Case("not UTF-8", "latin-1", text.encode("latin-1"), ("not UTF-8",))
    return Case("not UTF-8", kind, base_text().encode(kind), ("not UTF-8",))


CONTROL = [chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x81, 0x9F)]
CONTROL += ["\ufffe", "\uffff"]


@st.composite
def control_characters(draw: st.DrawFn) -> Case:
    text = base_text()
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(CONTROL))
    broken = text[:at] + char + text[at:]
    return Case(
        "control character",
        f"#x{ord(char):04x} at {at}",
        broken.encode(),
        (f"#x{ord(char):04x}", "invalid YAML"),
    )


def _nest(depth: int, style: str) -> str:
    if style == "list":
        return "[" * depth + "1" + "]" * depth
    return "{a: " * depth + "1" + "}" * depth


def laughs(levels: int, width: int = 10) -> str:
    """An anchor `l0` of `width` values and each next one `width` aliases of the one before:
    width**levels values once expanded."""
    parts = [f"l0: &l0 [{', '.join(['1'] * width)}]"]
    parts += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "{" + ", ".join(parts) + "}"


@st.composite
def huge_or_deep(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(["deep", "aliases", "recursive alias", "long integer", "long name"])
    )
    text = base_text()
    if kind == "deep":
        depth = draw(st.integers(101, 400))
        style = draw(st.sampled_from(["list", "map"]))
        value, says = _nest(depth, style), "nested more than 100 levels deep"
        name = f"{style} nested {depth} deep"
    elif kind == "aliases":
        levels = draw(st.integers(5, 9))
        value, says, name = laughs(levels), "aliases (*name) repeat", f"10**{levels} values"
    elif kind == "recursive alias":
        value = draw(st.sampled_from(["&a [*a]", "&a {x: *a}", "&a [1, [2, *a]]"]))
        says, name = "an alias (*name) inside the value it names", value
    elif kind == "long integer":
        digits = draw(st.integers(4301, 20_000))
        value, says, name = "1" * digits, "is too long", f"{digits} digits"
    else:
        length = draw(st.integers(65, 100_000))
        broken = text.replace(f"name: {BASE_NAME}\n", f"name: {'a' * length}\n", 1)
        return Case(
            "huge or deep", f"name of {length} letters", broken.encode(), ("metadata.name",)
        )
    broken = text.replace("  hidden: 16\n", f"  hidden: {value}\n", 1)
    assert broken != text
    return Case("huge or deep", name, broken.encode(), (says,))


TAGS = [
    ("!!python/object/apply:os.system ['echo hi']", "invalid YAML"),
    ("!!python/object/new:builtins.dict []", "invalid YAML"),
    ("!!python/name:os.system", "invalid YAML"),
    ("!!python/tuple [1, 2]", "invalid YAML"),
    ("!!python/bytes aGk=", "invalid YAML"),
    ("!custom value", "invalid YAML"),
    ("!<tag:example.com,2024:thing> value", "invalid YAML"),
    ("!!binary aGk=", "only plain scalars"),
    ("!!set {a: null}", "only plain scalars"),
    ("!!timestamp 2024-01-01", "only plain scalars"),
]


@st.composite
def yaml_tags(draw: st.DrawFn) -> Case:
    text = base_text()
    index = draw(st.sampled_from(_scalar_lines(text)))
    tag, says = draw(st.sampled_from(TAGS))
    broken = _edit_line(text, index, lambda m: f"{m['lead']}{m['key']}: {tag}")
    return Case("YAML tag", f"{tag.split()[0]} at line {index + 1}", broken.encode(), (says,))


FAMILIES: dict[str, st.SearchStrategy[Case]] = {
    "wrong type": wrong_types(),
    "missing key": missing_keys(),
    "unknown key": unknown_keys(),
    "out of range": out_of_range(),
    "bad enum": bad_enums(),
    "bad reference": bad_references(),
    "duplicate": duplicates(),
    "duplicate key": duplicate_keys(),
    "YAML syntax": bad_syntax(),
    "not UTF-8": not_utf8(),
    "control character": control_characters(),
    "huge or deep": huge_or_deep(),
    "YAML tag": yaml_tags(),
}


def manifests() -> st.SearchStrategy[Case]:
    """One malformed manifest: TINY with one mutation from one family."""
    return st.one_of(list(FAMILIES.values()))


# --- the hand-written corpus (what tests/recipes/test_malformed.py does not already hold) -------


def _hand(name: str, text: str | bytes, *says: str, run_code: int = 2) -> Case:
    data = text.encode() if isinstance(text, str) else text
    return Case("hand-written", name, data, says, run_code=run_code)


def _sub(old: str, new: str, *, count: int = 1) -> str:
    text = base_text()
    assert text.count(old) >= 1, old
    return text.replace(old, new, count)


def hand_written() -> list[Case]:
    text = base_text()
    return [
        _hand("NUL byte in a value", _sub("name: bad", "name: b\x00ad"), "#x0000"),
        _hand("bell character in a comment", "# \a\n" + text, ":1: invalid YAML"),
        _hand("recursive alias in args", _sub("hidden: 16", "hidden: &a [*a]"), "alias"),
        _hand(
            "recursive alias in a stage",
            _sub("- name: export\n  kind: export\n", "- &s {name: export, kind: export, x: *s}\n"),
            "alias",
        ),
        _hand("billion laughs (10**9 values)", _sub("hidden: 16", f"hidden: {laughs(9)}"), "alias"),
        _hand("5,000 nested lists", _sub("hidden: 16", f"hidden: {_nest(5000, 'list')}"), "nested"),
        _hand(
            "150 nested block mappings",
            _sub(
                "hidden: 16",
                "hidden:\n"
                + "".join("    " + "  " * i + f"k{i}:\n" for i in range(150))
                + "    "
                + "  " * 150
                + "1",
            ),
            "nested more than 100",
        ),
        _hand("integer of 5,000 digits", _sub("rounds: 1", "rounds: " + "9" * 5000), "too long"),
        _hand(
            "float underflowing to 0", _sub("sparsity: 0.25", "sparsity: 1.0e-400"), "must be > 0"
        ),
        _hand("float overflowing to inf", _sub("lr: 0.003", "lr: 1.0e+400"), "finite"),
        _hand("negative zero sparsity", _sub("sparsity: 0.25", "sparsity: -0.0"), "must be > 0"),
        _hand("seed of 2**32", _sub("- 0\n", "- 4294967296\n"), "seeds[0]"),
        _hand("seed as a float", _sub("- 0\n", "- 0.5\n"), "seeds[0]"),
        _hand("version 1.0", _sub("version: 1", "version: 1.0"), "metadata.version"),
        _hand("strict as a string", _sub("strict: true", "strict: 'true'"), "environment.strict"),
        _hand(
            "a stage that is a string",
            _sub("- name: export\n  kind: export\n", "- export\n"),
            "stages[2]",
        ),
        _hand(
            "stages as a mapping",
            dump({**base_data(), "stages": {"prune": {"kind": "prune"}}}),
            "stages: must be a list",
        ),
        _hand("UTF-16 with BOM", text.encode("utf-16"), "not UTF-8"),
        _hand("UTF-32", text.encode("utf-32"), "not UTF-8"),
        _hand("random bytes", random.Random(8).randbytes(512), "not UTF-8"),
        _hand(
            "cut in the middle of a multi-byte character",
            _sub("name: bad", "name: bé").encode()[: text.index("name: b") + 8],
            "not UTF-8",
        ),
        _hand(
            "truncated inside a flow mapping", "metadata: {name: bad, version: 1", "invalid YAML"
        ),
        _hand("only whitespace", "   \n\n  \n", "the document is empty"),
        _hand("a JSON array", "[1, 2, 3]\n", "must be a mapping"),
        _hand("a bare scalar", "recipe\n", "must be a mapping"),
        _hand("YAML 2.0 directive", "%YAML 2.0\n---\n" + text, "invalid YAML"),
        _hand(
            "CRLF line ends, an error on line 30",
            _sub("sparsity: 0.25", "sparsity: 2").replace("\n", "\r\n"),
            ":30 stages[0].sparsity",
        ),
        _hand("BOM then an error", "\ufeff" + _sub("rounds: 1", "rounds: 0"), "stages[0].rounds"),
        _hand(
            "top-level merge key bringing an unknown key", text + "<<: {x_merged: 1}\n", "x_merged"
        ),
        _hand(
            "python/name tag",
            _sub(
                "factory: compressgate.recipes.examples.digits:build_cnn",
                "factory: !!python/name:os.system",
            ),
            "invalid YAML",
        ),
        _hand(
            "python/object/new tag",
            _sub("hidden: 16", "hidden: !!python/object/new:os.system [ls]"),
            "invalid YAML",
        ),
        _hand(
            "explicit timestamp",
            _sub("hidden: 16", "hidden: !!timestamp 2024-01-01"),
            "only plain scalars",
        ),
        _hand(
            "a mapping key that is a list", _sub("hidden: 16", "? [a, b]\n    : 16"), "invalid YAML"
        ),
        _hand(
            "a 250 kB comment then a bad value",
            "#" + "x" * 250_000 + "\n" + _sub("rounds: 1", "rounds: 0"),
            ":32 stages[0].rounds",
        ),
        _hand(
            "description of a mapping",
            _sub("version: 1", "version: 1\n  description: {a: 1}"),
            "metadata.description",
        ),
        _hand(
            "gate after itself",
            _sub("rule: bound", "rule: bound\n  after: accuracy"),
            "no stage is named 'accuracy'",
        ),
        _hand(
            "checkpoint is a directory",
            _sub("hidden: 16", "hidden: 16\n  checkpoint: .cg"),
            "model.checkpoint",
        ),
        _hand(
            "lock through a symlink loop",
            _sub("lock: requirements.lock", "lock: loop.lock"),
            "environment.lock",
        ),
        _hand(
            "onnx and factory both",
            _sub("factory:", "onnx: requirements.lock\n  factory:"),
            "give exactly one of",
        ),
        _hand(
            "metric with a capital", _sub("metric: accuracy", "metric: Accuracy"), "gates[0].metric"
        ),
        _hand("owner of 65 letters", _sub("- ml-platform", "- " + "a" * 65), "metadata.owners[0]"),
        _hand(
            "import of a keyword module",
            _sub("loader: compressgate.recipes.examples.digits:load", "loader: recipes.class:load"),
            "data.loader",
        ),
        _hand("two documents, the second empty", text + "---\n", "one YAML document"),
    ]


# --- running a case -----------------------------------------------------------------------------


@dataclass
class Setup:
    """A bench with a valid signed recipe and an existing (empty) catalog in its workspace."""

    bench: Bench
    recipe: Path  # ROOT/tiny.yaml, valid and signed
    bad: Path  # ROOT/bad.yaml, where malformed manifests are written

    @property
    def trust(self) -> Path:
        return self.bench.trust

    @property
    def workspace(self) -> Path:
        return self.bench.workspace


def make_setup(folder: Path) -> Setup:
    from compressgate.registry.catalog.repository import Catalog, catalog_url

    bench = make_bench(folder)
    recipe = bench.recipe("tiny")
    with Catalog(catalog_url(bench.workspace), create=True):
        pass  # the catalog exists, so "no row added" is measured on real tables
    (bench.root / "loop.lock").symlink_to("loop.lock")
    (bench.root / "loop.yaml").symlink_to("loop.yaml")
    return Setup(bench, recipe, bench.root / f"{BASE_NAME}.yaml")


@dataclass(frozen=True)
class State:
    """Catalog rows and every file (with its sha256) under the workspace, recipe folder and keys."""

    rows: dict[str, int]
    files: dict[str, str]

    def changes(self, after: State) -> list[str]:
        found = [
            f"table {t}: {self.rows.get(t, 0)} -> {after.rows.get(t, 0)} rows"
            for t in sorted(set(self.rows) | set(after.rows))
            if self.rows.get(t, 0) != after.rows.get(t, 0)
        ]
        for name in sorted(set(self.files) | set(after.files)):
            if Path(name).name.startswith("catalog.db"):
                continue  # the database's own files: its rows are compared above
            if name not in self.files:
                found.append(f"new file {name}")
            elif name not in after.files:
                found.append(f"removed {name}")
            elif self.files[name] != after.files[name]:
                found.append(f"changed {name}")
        return found


def state(setup: Setup, *extra: Path) -> State:
    printed: Footprint = footprint(setup.workspace, (setup.bench.root, setup.bench.keys, *extra))
    files = {}
    for name in printed.files:
        path = Path(name)
        if path.is_file() and not path.is_symlink():
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            files[name] = "dir" if path.is_dir() else "link"
    return State(printed.rows, files)


@dataclass(frozen=True)
class Checked:
    """What one refusal did, against what it had to do."""

    label: str
    expected: int
    code: int
    lines: tuple[str, ...]
    traceback: str  # "" when there was none
    changes: tuple[str, ...]
    says: tuple[str, ...] = ()
    stdout: str = ""

    @property
    def missing(self) -> list[str]:
        line = self.lines[0] if len(self.lines) == 1 else ""
        return [s for s in self.says if s not in line]

    @property
    def held(self) -> bool:
        return (
            self.code == self.expected
            and len(self.lines) == 1
            and not self.traceback
            and not self.changes
            and not self.missing
        )

    def __str__(self) -> str:
        problems = []
        if self.code != self.expected:
            problems.append(f"exit {self.code}, not {self.expected}")
        if len(self.lines) != 1:
            problems.append(f"{len(self.lines)} message lines")
        if self.traceback:
            problems.append(f"traceback: {self.traceback}")
        if self.changes:
            problems.append(f"wrote: {'; '.join(self.changes)}")
        if self.missing:
            problems.append(f"message lacks {self.missing}")
        shown_lines = " | ".join(self.lines)[:600]
        verdict = "held" if self.held else "MISSED (" + ", ".join(problems) + ")"
        return f"{self.label}: {verdict}: {shown_lines}"


def message_lines(stderr: str) -> tuple[str, ...]:
    """stderr's lines other than `hint:` lines, as `Outcome.message_lines` counts them."""
    return tuple(
        line
        for line in stderr.splitlines()
        if line.strip() and not line.lstrip().startswith("hint:")
    )


def invoke(
    args: Sequence[str | Path], env: dict[str, str | None] | None = None
) -> tuple[int, str, str, str]:
    """`compressgate ARGS` in-process: exit code, stdout, stderr, and a traceback's line
    ("" if none: an exception other than SystemExit escaping the CLI is a traceback)."""
    out = run_in_process(*args, env=env)
    return out.code, out.stdout, out.stderr, traceback_of(out)


def check(
    setup: Setup,
    label: str,
    args: Sequence[str | Path],
    expected: int,
    says: Sequence[str] = (),
    *,
    extra: Sequence[Path] = (),
    subprocess: bool = False,
    env: dict[str, str] | None = None,
) -> Checked:
    """Run one refused command and compare what it did with what it had to do."""
    before = state(setup, *extra)
    if subprocess:
        outcome = cg(*args, env={"COMPRESSGATE_WORKSPACE": str(setup.workspace), **(env or {})})
        code, stdout, stderr = outcome.code, outcome.stdout, outcome.stderr
        traceback = "Traceback in output" if "Traceback" in stdout + stderr else ""
    else:
        code, stdout, stderr, traceback = invoke(
            args, {"COMPRESSGATE_WORKSPACE": str(setup.workspace), **(env or {})}
        )
    after = state(setup, *extra)
    return Checked(
        label,
        expected,
        code,
        message_lines(stderr),
        traceback,
        tuple(before.changes(after)),
        tuple(says),
        stdout,
    )


def write_manifest(setup: Setup, case: Case, *, signed: bool) -> Path:
    """Write the case's bytes as ROOT/bad.yaml; with `signed`, sign those bytes as they are
    (as a careless author's tool might, with no validation) with the author's key."""
    from compressgate.recipes.signing import envelope_path

    setup.bad.write_bytes(case.data)
    envelope = envelope_path(setup.bad)
    if signed:
        sign_bytes(setup.bench, setup.bad, BASE_NAME)
    else:
        envelope.unlink(missing_ok=True)
    return setup.bad


def check_validate(setup: Setup, case: Case, *, subprocess: bool = False) -> Checked:
    path = write_manifest(setup, case, signed=False)
    args = ["recipe", "validate", path, "--trust", setup.trust, "--no-power"]
    label = f"validate [{case.family}] {case.name}"
    return check(setup, label, args, case.code, case.says, subprocess=subprocess)


def check_run(
    setup: Setup, case: Case, *, command: str = "run", subprocess: bool = False
) -> Checked:
    """`run` (or `submit`) of the malformed bytes, correctly signed: refused before any work."""
    path = write_manifest(setup, case, signed=True)
    args = [command, path, "--trust", setup.trust, "--workspace", setup.workspace]
    label = f"{command} [{case.family}] {case.name}"
    says = case.says if case.run_code == case.code else ()
    return check(setup, label, args, case.run_code, says, subprocess=subprocess)


# --- trust files, keys, envelopes and CLI arguments ----------------------------------------------


def trust_cases(setup: Setup) -> list[Case]:
    """Malformed trust files (each exit 2): as text, from the bench's valid one."""
    good = setup.trust.read_text()
    data = yaml.load(good, Loader=_FAST)
    owner = next(iter(data["owners"]))
    key = data["owners"][owner]["keys"][0]
    public = key["keyval"]["public"]

    def with_(path: Path_, value: Any) -> str:
        return dump(_set(data, path, value))

    def without(path: Path_) -> str:
        return dump(_delete(data, path))

    second = next(iter(list(data["owners"])[1:]))
    cases = [
        ("empty", "", "the document is empty"),
        ("only a comment", "# owners\n", "the document is empty"),
        ("a list", "- ml-platform\n", "must be a mapping"),
        ("not UTF-8", good.encode() + b"\xff", "UTF-8"),
        ("a NUL byte", good.replace("Trust", "Tr\x00ust", 1), "#x0000"),
        ("broken YAML", good.replace("owners:", "owners: [", 1), "invalid YAML"),
        (
            "python tag",
            good.replace("kind: Trust", "kind: !!python/name:os.system", 1),
            "invalid YAML",
        ),
        (
            "recursive alias",
            "apiVersion: compressgate/v1\nkind: Trust\nowners: &o {x: *o}\n",
            "alias",
        ),
        ("billion laughs", good + f"x_laughs: {laughs(9)}\n", "alias"),
        ("deep nesting", good + f"x_deep: {_nest(400, 'list')}\n", "nested"),
        ("integer of 5,000 digits", good + "x_n: " + "1" * 5000 + "\n", "too long"),
        ("wrong apiVersion", with_(("apiVersion",), "compressgate/v2"), "apiVersion"),
        ("wrong kind", with_(("kind",), "Recipe"), "kind"),
        ("no owners", without(("owners",)), "owners"),
        ("owners empty", with_(("owners",), {}), "owners"),
        ("owners a list", with_(("owners",), [owner]), "owners"),
        (
            "owner name with a capital",
            dump({**data, "owners": {"Ml": data["owners"][owner]}}),
            "owners",
        ),
        ("roles empty", with_(("owners", owner, "roles"), []), f"owners.{owner}.roles"),
        ("unknown role", with_(("owners", owner, "roles", 0), "king"), "'king' is not allowed"),
        ("roles a string", with_(("owners", owner, "roles"), "author"), f"owners.{owner}.roles"),
        ("no keys", with_(("owners", owner, "keys"), []), f"owners.{owner}.keys"),
        ("key without keyval", without(("owners", owner, "keys", 0, "keyval")), "keyval"),
        (
            "public key not hex",
            with_(("owners", owner, "keys", 0, "keyval", "public"), "z" * 64),
            "keyval.public",
        ),
        (
            "public key in capitals",
            with_(("owners", owner, "keys", 0, "keyval", "public"), public.upper()),
            "keyval.public",
        ),
        (
            "public key too short",
            with_(("owners", owner, "keys", 0, "keyval", "public"), public[:62]),
            "keyval.public",
        ),
        ("keytype rsa", with_(("owners", owner, "keys", 0, "keytype"), "rsa"), "keytype"),
        (
            "keyid not the key's",
            with_(("owners", owner, "keys", 0, "keyid"), "0" * 64),
            "keyid does not match",
        ),
        ("one key, two owners", with_(("owners", second, "keys"), [key]), "already belongs"),
        ("unknown key", with_(("x_extra",), 1), "unknown key"),
        ("unknown owner field", with_(("owners", owner, "x_extra"), 1), "unknown key"),
        (
            "owner listed twice",
            good.replace("owners:\n", f"owners:\n  {owner}:\n    roles: [author]\n", 1),
            "duplicate key",
        ),
    ]
    return [
        Case("trust file", name, text.encode() if isinstance(text, str) else text, (says,))
        for name, text, says in cases
    ]


def check_trust(setup: Setup, case: Case, command: str) -> Checked:
    bad = setup.bench.root.parent / "bad-trust.yaml"
    bad.write_bytes(case.data)
    if command == "validate":
        args: list[str | Path] = ["recipe", "validate", setup.recipe, "--trust", bad, "--no-power"]
    elif command == "verify":
        args = ["recipe", "verify", setup.recipe, "--trust", bad]
    else:
        args = [command, setup.recipe, "--trust", bad, "--workspace", setup.workspace]
    return check(setup, f"{command} --trust [{case.name}]", args, 2, case.says)


def _pem(kind: str) -> bytes:
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

    plain = s.NoEncryption()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            s.Encoding.PEM, s.PrivateFormat.PKCS8, plain
        )
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            s.Encoding.PEM, s.PrivateFormat.PKCS8, plain
        )
    if kind == "x25519":
        return x25519.X25519PrivateKey.generate().private_bytes(
            s.Encoding.PEM, s.PrivateFormat.PKCS8, plain
        )
    key = ed25519.Ed25519PrivateKey.generate()
    if kind == "encrypted":
        return key.private_bytes(
            s.Encoding.PEM, s.PrivateFormat.PKCS8, s.BestAvailableEncryption(b"pw")
        )
    if kind == "der":
        return key.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, plain)
    if kind == "openssh":
        return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, plain)
    assert kind == "public"
    return key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)


def private_key_cases(setup: Setup) -> list[Case]:
    """Malformed private keys for `recipe sign --key` (exit 2)."""
    good = setup.bench.key("ml-platform").read_bytes()
    items = [
        ("empty", b"", "not a PEM private key"),
        ("text", b"my key\n", "not a PEM private key"),
        ("random bytes", random.Random(3).randbytes(64), "not a PEM private key"),
        ("truncated PEM", good[: len(good) // 2], "not a PEM private key"),
        ("one changed base64 letter", good.replace(b"MC4C", b"MC5C"), "not a PEM private key"),
        ("RSA key", _pem("rsa"), "not an Ed25519 key"),
        ("EC key", _pem("ec"), "not an Ed25519 key"),
        ("X25519 key", _pem("x25519"), "not an Ed25519 key"),
        (
            "encrypted PEM, no passphrase",
            _pem("encrypted"),
            "is encrypted: set COMPRESSGATE_PASSPHRASE_FILE",
        ),
        ("DER", _pem("der"), "not a PEM private key"),
        ("OpenSSH format", _pem("openssh"), "not a PEM private key"),
        ("a public key PEM", _pem("public"), "not a PEM private key"),
        (
            "the public key JSON",
            (setup.bench.keys / "ml-platform.pub.json").read_bytes(),
            "not a PEM private key",
        ),
    ]
    return [Case("private key", name, data, (says,)) for name, data, says in items]


def public_key_cases(setup: Setup) -> list[Case]:
    """Malformed public keys for `trust add --key` (exit 2)."""
    good = json.loads((setup.bench.keys / "ml-platform.pub.json").read_text())
    public = good["keyval"]["public"]
    items: list[tuple[str, Any, str]] = [
        ("empty", b"", "not JSON"),
        ("not JSON", b"{keyid: 1", "not JSON"),
        ("random bytes", random.Random(4).randbytes(64), "not JSON"),
        ("a PEM private key", setup.bench.key("ml-platform").read_bytes(), "not JSON"),
        ("a JSON list", [good], "a public key is a JSON object"),
        ("a JSON string", public, "a public key is a JSON object"),
        ("keytype rsa", {**good, "keytype": "rsa"}, "keytype and scheme"),
        ("scheme missing", {k: v for k, v in good.items() if k != "scheme"}, "keytype and scheme"),
        ("no keyval", {k: v for k, v in good.items() if k != "keyval"}, "keyval.public"),
        ("keyval a string", {**good, "keyval": public}, "keyval.public"),
        (
            "public in capitals",
            {**good, "keyid": None, "keyval": {"public": public.upper()}},
            "keyval.public",
        ),
        (
            "public too short",
            {**good, "keyid": None, "keyval": {"public": public[:-2]}},
            "keyval.public",
        ),
        (
            "public not hex",
            {**good, "keyid": None, "keyval": {"public": "g" * 64}},
            "keyval.public",
        ),
        ("keyid not the key's", {**good, "keyid": "0" * 64}, "does not match the key"),
        ("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("integer of 5,000 digits", b"1" + b"0" * 5000, "not JSON"),
    ]
    return [
        Case(
            "public key",
            name,
            value if isinstance(value, bytes) else json.dumps(value).encode(),
            (says,),
        )
        for name, value, says in items
    ]


def check_private_key(setup: Setup, case: Case) -> Checked:
    bad = setup.bench.root.parent / "bad.key"
    bad.write_bytes(case.data)
    args = ["recipe", "sign", setup.recipe, "--key", bad, "--trust", setup.trust]
    return check(setup, f"recipe sign --key [{case.name}]", args, 2, case.says)


def check_public_key(setup: Setup, case: Case) -> Checked:
    bad = setup.bench.root.parent / "bad.pub.json"
    bad.write_bytes(case.data)
    args = [
        "trust",
        "add",
        "--trust",
        setup.trust,
        "--owner",
        "newcomer",
        "--key",
        bad,
        "--role",
        "author",
    ]
    return check(setup, f"trust add --key [{case.name}]", args, 2, case.says)


def envelope_cases(setup: Setup) -> list[Case]:
    """Broken envelopes of the valid signed recipe (each exit 3: an integrity failure)."""
    import base64

    from compressgate.recipes.load import load_recipe
    from compressgate.recipes.signing import envelope_path, recipe_statement
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.kernel.keys import load_private_key

    raw = envelope_path(setup.recipe).read_bytes()
    body = json.loads(raw)
    author = load_private_key(setup.bench.key("ml-platform"))
    approver = load_private_key(setup.bench.key("ml-lead"))
    digest = sha256_bytes(setup.recipe.read_bytes())
    statement = recipe_statement(load_recipe(setup.recipe))  # the manifest, then its lock

    def signed(payload: bytes, key: Any = author, kind: str = dsse.INTOTO_PAYLOAD_TYPE) -> bytes:
        return dsse.sign(payload, kind, [key]).to_json()

    def edit(**changes: Any) -> bytes:
        return json.dumps({**body, **changes}).encode()

    sig = base64.b64decode(body["signatures"][0]["sig"])
    flipped = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()
    other = json.loads(statement)
    items: list[tuple[str, bytes, str]] = [
        ("empty", b"", "not a DSSE envelope"),
        ("not JSON", b"{payload", "not a DSSE envelope"),
        ("not UTF-8", b"\xff\xfe\xfd", "not a DSSE envelope"),
        ("truncated", raw[: len(raw) // 2], "not a DSSE envelope"),
        ("a JSON list", b"[]", "expected a JSON object"),
        ("a JSON string", b'"envelope"', "expected a JSON object"),
        (
            "no payloadType",
            json.dumps({k: v for k, v in body.items() if k != "payloadType"}).encode(),
            "payloadType missing",
        ),
        ("payloadType a number", edit(payloadType=1), "payloadType missing"),
        ("payloadType changed", edit(payloadType="text/plain"), "payloadType"),
        (
            "no payload",
            json.dumps({k: v for k, v in body.items() if k != "payload"}).encode(),
            "payload is missing",
        ),
        ("payload not base64", edit(payload="%%%"), "not valid base64"),
        ("payload a number", edit(payload=7), "payload is missing"),
        (
            "payload changed",
            edit(payload=base64.b64encode(statement + b" ").decode()),
            "no signature verifies",
        ),
        ("no signatures", edit(signatures=[]), "no signatures"),
        ("signatures not a list", edit(signatures={"sig": "x"}), "no signatures"),
        ("signature not an object", edit(signatures=["x"]), "signatures[0] is not an object"),
        (
            "keyid a number",
            edit(signatures=[{"keyid": 1, "sig": body["signatures"][0]["sig"]}]),
            "keyid is not a string",
        ),
        ("sig missing", edit(signatures=[{"keyid": "k"}]), "sig is missing"),
        ("sig not base64", edit(signatures=[{"keyid": "k", "sig": "!!"}]), "not valid base64"),
        (
            "sig one bit flipped",
            edit(signatures=[{"keyid": "k", "sig": flipped}]),
            "no signature verifies",
        ),
        ("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("integer of 5,000 digits", b'{"payload": 1' + b"0" * 5000 + b"}", "not a DSSE envelope"),
        ("signed by an approver, not an author", signed(statement, approver), "'author' role"),
        ("signed payload not JSON", signed(b"recipe"), "payload is not JSON"),
        ("signed payload not a statement", signed(b'{"a": 1}'), "not an in-toto Statement"),
        (
            "signed payload JSON nested deep",
            signed(b"[" * 100_000 + b"]" * 100_000),
            "nested too deeply",
        ),
        (
            "signed other predicateType",
            signed(json.dumps({**other, "predicateType": "x"}).encode()),
            "does not sign a recipe",
        ),
        (
            "signed subject without digest",
            signed(json.dumps({**other, "subject": [{"name": "tiny.yaml"}]}).encode()),
            "no sha256 digest",
        ),
        (
            "signed other content's digest",
            signed(statement.replace(digest.encode(), b"0" * 64)),
            "changed since it was signed",
        ),
        ("signed with another payloadType", signed(statement, kind="text/plain"), "payloadType"),
    ]
    return [Case("envelope", name, data, (says,), code=3, run_code=3) for name, data, says in items]


def check_envelope(setup: Setup, case: Case, command: str) -> Checked:
    from compressgate.recipes.signing import envelope_path

    target = envelope_path(setup.recipe)
    good = target.read_bytes()
    target.write_bytes(case.data)
    try:
        if command == "verify":
            args: list[str | Path] = ["recipe", "verify", setup.recipe, "--trust", setup.trust]
        else:
            args = [command, setup.recipe, "--trust", setup.trust, "--workspace", setup.workspace]
        return check(setup, f"{command} with envelope [{case.name}]", args, 3, case.says)
    finally:
        target.write_bytes(good)


def check_envelope_directory(setup: Setup, command: str) -> Checked:
    """The envelope's path is a directory (exit 3 for verify and run; 2 for sign)."""
    import shutil

    from compressgate.recipes.signing import envelope_path

    target = envelope_path(setup.recipe)
    good = target.read_bytes()
    target.unlink()
    target.mkdir()
    try:
        if command == "sign":
            key = setup.bench.key("ml-platform")
            args: list[str | Path] = ["recipe", "sign", setup.recipe, "--key", key]
            code, says = 2, "is a directory"
        elif command == "verify":
            args, code, says = (
                ["recipe", "verify", setup.recipe, "--trust", setup.trust],
                3,
                "is a directory",
            )
        else:
            args = [command, setup.recipe, "--trust", setup.trust, "--workspace", setup.workspace]
            code, says = 3, "is a directory"
        return check(setup, f"{command} with the envelope a directory", args, code, (says,))
    finally:
        shutil.rmtree(target)
        target.write_bytes(good)


def argument_cases(setup: Setup) -> list[tuple[str, list[str | Path], str]]:
    """Malformed command lines (each exit 2) with a fragment of the one line they must print."""
    r, t, w = setup.recipe, setup.trust, setup.workspace
    folder = setup.bench.root
    pub = setup.bench.keys / "ml-platform.pub.json"
    return [
        ("unknown option", ["run", r, "--frob"], "No such option '--frob'"),
        ("unknown root option", ["--frob"], "No such option '--frob'"),
        ("unknown command", ["frobnicate"], "No such command 'frobnicate'"),
        ("unknown subcommand", ["recipe", "frob"], "No such command 'frob'"),
        ("missing argument", ["run"], "Missing argument 'FILE'"),
        ("missing arguments", ["recipe", "validate"], "Missing argument"),
        ("extra argument", ["run", r, r], "unexpected extra argument"),
        ("bad choice", ["report", "run-x", "--format", "pdf"], "'pdf' is not one of"),
        (
            "bad role",
            ["trust", "add", "--trust", t, "--owner", "x", "--key", pub, "--role", "king"],
            "'king' is not one of",
        ),
        (
            "not an integer",
            ["catalog", "list", "--limit", "many", "--workspace", w],
            "'many' is not a valid integer",
        ),
        (
            "integer out of range",
            ["catalog", "list", "--limit", "0", "--workspace", w],
            "not in the range",
        ),
        (
            "negative offset",
            ["catalog", "list", "--offset", "-1", "--workspace", w],
            "not in the range",
        ),
        ("option without its value", ["keys", "generate", "--owner"], "requires an argument"),
        ("required option missing", ["recipe", "sign", r], "Missing option '--key'"),
        ("a directory for a FILE", ["recipe", "validate", folder], "is a directory"),
        ("a file for a DIR", ["run", r, "--trust", t, "--workspace", r], "is a file"),
        (
            "a directory for --trust",
            ["run", r, "--trust", folder, "--workspace", w],
            "is a directory",
        ),
        (
            "a recipe that is a symlink loop",
            ["recipe", "validate", folder / "loop.yaml"],
            "cannot be read",
        ),
        (
            "run of a symlink loop",
            ["run", folder / "loop.yaml", "--trust", t, "--workspace", w],
            "cannot be read",
        ),
        ("ci with nothing to check", ["ci", "--workspace", w], "give recipe PATHS"),
        (
            "ci path that does not exist",
            ["ci", folder / "nope", "--workspace", w],
            "does not exist",
        ),
        (
            "limit not an integer",
            ["review", "status", "--limit", "x", "--workspace", w],
            "'x' is not a valid integer",
        ),
        (
            "bad owner name for keys",
            ["keys", "generate", "--owner", "Bad Name", "--out", folder / "k"],
            "owner name 'Bad Name'",
        ),
        (
            "bad owner name for trust",
            ["trust", "add", "--trust", t, "--owner", "Bad Name", "--key", pub, "--role", "author"],
            "owner name 'Bad Name'",
        ),
        (
            "unknown example",
            ["recipe", "init", folder / "new", "--example", "nope"],
            "unknown example 'nope'",
        ),
        (
            "catalog URL of another database",
            ["run", r, "--trust", t, "--workspace", w, "--catalog", "mysql://u@h/db"],
            "only SQLite and PostgreSQL",
        ),
        (
            "catalog URL that does not parse",
            ["catalog", "list", "--catalog", "postgresql://u@h:port/db", "--workspace", w],
            "cannot be parsed",
        ),
    ]


def check_argument(
    setup: Setup, name: str, args: Sequence[str | Path], says: str, *, subprocess: bool = False
) -> Checked:
    extra = (setup.bench.root.parent,)
    return check(setup, f"arguments [{name}]", args, 2, (says,), extra=extra, subprocess=subprocess)


# --- generating the manifests -------------------------------------------------------------------


def generated(count: int, seed: int) -> list[Case]:
    """`count` malformed manifests drawn by hypothesis (reproducible from `seed`), distinct."""
    cases: dict[bytes, Case] = {}

    @settings(
        max_examples=count * 3,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=manifests())
    def draw(case: Case) -> None:
        if len(cases) < count:
            cases.setdefault(case.data, case)

    from hypothesis import seed as fixed_seed

    fixed_seed(seed)(draw)()
    return list(cases.values())


# --- figures ------------------------------------------------------------------------------------


def _figure(name: str, checks: Sequence[Checked]) -> Figure:
    held = sum(c.held for c in checks)
    codes = Counter(c.code for c in checks)
    detail = ", ".join(f"exit {code} ×{n}" for code, n in sorted(codes.items()))
    missed = [c for c in checks if not c.held]
    if missed:
        detail += f"; first miss: {missed[0]}"[:400]
    return Figure(SECTION, name, len(checks), held, detail)


def _families(cases: Sequence[Case]) -> str:
    return ", ".join(f"{f} {n}" for f, n in Counter(c.family for c in cases).most_common())


def figures(options: Options) -> list[Figure]:
    setup = make_setup(options.folder)
    out: list[Figure] = []

    start = time.perf_counter()
    cases = generated(options.count(500), options.seed)
    checks = [check_validate(setup, case) for case in cases]
    seconds = time.perf_counter() - start
    figure = _figure("generated manifests: recipe validate (hypothesis)", checks)
    out.append(
        Figure(
            SECTION,
            figure.name,
            figure.tried,
            figure.held,
            f"{figure.detail}; {seconds:.0f} s; {_families(cases)}",
        )
    )

    sample = random.Random(options.seed).sample(cases, min(len(cases), options.count(60)))
    runs = [check_run(setup, case) for case in sample]
    runs += [check_run(setup, case, command="submit") for case in sample[: options.count(20)]]
    out.append(_figure("generated manifests, signed as they are: run / submit", runs))

    hand = hand_written()
    out.append(
        _figure(
            "hand-written manifests: validate, and run once signed",
            [check_validate(setup, case) for case in hand]
            + [check_run(setup, case) for case in hand],
        )
    )

    trust = trust_cases(setup)
    out.append(
        _figure(
            "malformed trust files: validate, verify, run",
            [
                check_trust(setup, case, command)
                for case in trust
                for command in ("validate", "verify", "run")
            ],
        )
    )

    keys = [check_private_key(setup, case) for case in private_key_cases(setup)]
    keys += [check_public_key(setup, case) for case in public_key_cases(setup)]
    out.append(_figure("malformed keys: recipe sign --key, trust add --key", keys))

    envelopes = [
        check_envelope(setup, case, command)
        for case in envelope_cases(setup)
        for command in ("verify", "run")
    ]
    envelopes += [check_envelope_directory(setup, c) for c in ("sign", "verify", "run")]
    out.append(_figure("malformed envelopes of a valid recipe: verify, run (exit 3)", envelopes))

    # Every case through the console script at full scale; a sample of them below it (the tests
    # of `make test` pass every case to the CLI in-process).
    every = argument_cases(setup)
    size = min(len(every), options.count(len(every), least=5))
    sample = random.Random(options.seed + 2).sample(every, size)
    arguments = [
        check_argument(setup, name, args, says, subprocess=True)
        for name, args, says in (every if options.scale >= 1 else sample)
    ]
    out.append(_figure("malformed CLI arguments (console script)", arguments))

    console = [
        check_validate(setup, case, subprocess=True)
        for case in random.Random(options.seed + 1).sample(
            cases, min(len(cases), options.count(20))
        )
    ]
    console += [
        check_run(setup, case, subprocess=True)
        for case in hand[:: max(1, len(hand) // options.count(5))]
    ]
    out.append(_figure("manifests through the console script (subprocess)", console))
    return out
