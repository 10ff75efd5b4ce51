"""YAML documents validated by pydantic models, with every error at its field path and line.

`load_document` parses one YAML document (duplicate keys are errors, timestamps stay strings),
then validates it strictly: the data goes through JSON so that lists become tuples and no string
is quietly coerced into a number. Every pydantic error becomes an `Issue` such as
`recipe.yaml:14 stages[2].sparsity: must be < 1`.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from compressgate.recipes.spec import BUILTIN, PLUGIN
from compressgate.registry.kernel.errors import Issue, ManifestError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps `2024-01-01` a string: the models decide what a value means, and
    that stops composing at MAX_NODES values (an alias counted once), before the node tree of a
    long flat document grows (about 750 bytes a node: 260,000 values in a 1 MiB file would hold
    200 MB)."""

    _composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._composed += 1
        if self._composed > MAX_NODES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, _too_many_nodes(), mark)
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An integer, or a located error for one too long for Python to read (4,300 digits)."""
    try:
        return int(yaml.SafeLoader.construct_yaml_int(loader, node))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"the integer {node.value[:12]}… is too long", node.start_mark
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)

# Deeper than any manifest needs (pydantic's own limit is 200); aliases (`*name`) may repeat
# at most this many values, so a small file cannot expand into a huge document. The document
# as its aliases expand it is bounded too, by its nodes and by the text of its scalars, each
# counted as the walk meets them (so refusing costs what the limit allows, not what the bomb
# would grow to); and so are the file and every scalar in it.
MAX_DEPTH = 100
MAX_ALIASED_VALUES = 10_000
MAX_BYTES = 1024 * 1024  # a manifest file
MAX_SCALAR = 64 * 1024  # characters of one value (a description, a reason)
MAX_NODES = 100_000  # values and keys, aliases expanded
MAX_EXPANDED_TEXT = 4 * 1024 * 1024  # characters of every scalar, aliases expanded


def _too_many_nodes() -> str:
    return (
        f"more than {MAX_NODES:,} values with its aliases (*name) expanded; write a smaller "
        "manifest"
    )


class _Dumper(yaml.SafeDumper):
    """SafeDumper whose output reads back as the same data.

    PyYAML writes NEL and the Unicode line and paragraph separators raw inside single-quoted
    scalars, where its reader folds them as line breaks; double quotes escape them instead.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """YAML text for plain data (as from `model_dump(mode="json")`), keys in the given order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed document: its data and the node tree that knows every value's line."""

    source: str
    data: Any
    root: yaml.Node

    def locate(self, loc: Loc, *, tags: Sequence[str] = ("kind", "rule")) -> tuple[int, str]:
        """The 1-based line and display path of a pydantic `loc`.

        Union tags that pydantic puts into a loc (`stages.2.prune.sparsity`) are skipped: a
        step that names the value of a node's `kind`/`rule` key is a tag, not a key.
        """
        node: yaml.Node | None = self.root
        line = self.root.start_mark.line + 1
        shown: list[str | int] = []
        for step in loc:
            if isinstance(node, yaml.MappingNode):
                if any(_scalar(_get(node, tag)) == step for tag in tags):
                    continue
                key_node, value_node = _item(node, step)
                if value_node is not None and key_node is not None:
                    shown.append(step)
                    line = key_node.start_mark.line + 1
                    node = value_node
                    continue
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(step, int)
                and 0 <= step < len(node.value)
            ):
                shown.append(step)
                node = node.value[step]
                line = node.start_mark.line + 1
                continue
            if isinstance(node, yaml.MappingNode) and isinstance(step, str):
                shown.append(step)  # a key that is missing or unknown: point at its mapping
            node = None
        return line, format_path(shown)


def format_path(loc: Sequence[str | int]) -> str:
    """`('stages', 2, 'sparsity')` -> `stages[2].sparsity`."""
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else step
    return out


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse exactly one YAML mapping document; syntax errors and duplicate keys are Issues,
    and so is a document over the bounds above."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        message = (
            f"the file is {size:,} bytes, over the {MAX_BYTES:,} a manifest may have; large "
            "data belongs in files the manifest names"
        )
        raise ManifestError(issues=(Issue(source, None, "", message),))
    _count_values(text, source)
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except RecursionError:
        message = f"invalid YAML: nested more than {MAX_DEPTH} levels deep"
        raise ManifestError(issues=(Issue(source, None, "", message),)) from None
    except yaml.reader.ReaderError as exc:  # a control character, NUL among them
        at = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"invalid YAML: unacceptable character #x{code:04x}: {exc.reason}"
        raise ManifestError(issues=(Issue(source, at, "", message),)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        context = exc.context_mark
        if exc.context and context is not None and context.line + 1 != line:
            problem += f" ({exc.context} at line {context.line + 1})"
        raise ManifestError(issues=(Issue(source, line, "", f"invalid YAML: {problem}"),)) from None
    except yaml.YAMLError as exc:
        message = f"invalid YAML: {' '.join(str(exc).split())}"
        raise ManifestError(issues=(Issue(source, None, "", message),)) from None
    if not nodes:
        raise ManifestError(issues=(Issue(source, 1, "", "the document is empty"),))
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise ManifestError(issues=(Issue(source, line, "", "one YAML document per file"),))
    root = nodes[0]
    if not isinstance(root, yaml.MappingNode):
        raise ManifestError(
            issues=(Issue(source, root.start_mark.line + 1, "", "the document must be a mapping"),)
        )
    _check_shape(root, source)
    duplicates = list(_duplicate_keys(root, ()))
    if duplicates:
        raise ManifestError(
            issues=tuple(
                Issue(source, line, format_path(path), "duplicate key (each key may appear once)")
                for path, line in duplicates
            )
        )
    # The data are built from the nodes already composed (and checked), not from the text again:
    # parsing twice held two node trees at once. A merge key (`<<`) is flattened into its
    # mapping's node, so that a merged key is found at the line it is written on.
    loader = _Loader("")
    try:
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:  # e.g. a !!python/object tag the safe loader refuses
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ManifestError(
            issues=(Issue(source, line, "", f"invalid YAML: {exc.problem}"),)
        ) from None
    finally:
        loader.dispose()
    return YamlDocument(source, data, root)


_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


def _count_values(text: str, source: str) -> None:
    """Refuse a document of more than MAX_NODES values (an alias counted once) before it is
    composed: libyaml's parser, where PyYAML has it, counts them in a tenth of the time the
    composer takes to build them (about 4 s for 100,000 values). The composer counts them too,
    and reports the syntax errors this pass leaves to it."""
    parser = getattr(yaml, "CSafeLoader", None)
    if parser is None:
        return
    loader = parser(text)
    count = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, _NODE_EVENTS):
                count += 1
                if count > MAX_NODES:
                    mark = event.start_mark
                    line = mark.line + 1 if mark is not None else None
                    message = f"invalid YAML: {_too_many_nodes()}"
                    raise ManifestError(issues=(Issue(source, line, "", message),))
    except yaml.YAMLError:
        return
    finally:
        loader.dispose()


def _check_shape(root: yaml.Node, source: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH, an alias inside the value it names
    (which never ends), aliases that repeat more than MAX_ALIASED_VALUES values, a scalar
    longer than MAX_SCALAR, or a document that its aliases expand past MAX_NODES nodes or
    MAX_EXPANDED_TEXT characters."""
    seen: set[int] = set()
    repeated = nodes = text = 0

    def refuse(node: yaml.Node, message: str) -> ManifestError:
        return ManifestError(issues=(Issue(source, node.start_mark.line + 1, "", message),))

    def walk(node: yaml.Node, ancestors: list[int]) -> None:
        nonlocal repeated, nodes, text
        if id(node) in ancestors:
            raise refuse(node, "invalid YAML: an alias (*name) inside the value it names")
        if len(ancestors) >= MAX_DEPTH:
            raise refuse(node, f"invalid YAML: nested more than {MAX_DEPTH} levels deep")
        nodes += 1
        if nodes > MAX_NODES:
            raise refuse(node, f"invalid YAML: {_too_many_nodes()}")
        if isinstance(node, yaml.ScalarNode):
            length = len(node.value)
            if length > MAX_SCALAR:
                raise refuse(
                    node, f"a value of {length:,} characters, over the {MAX_SCALAR:,} allowed"
                )
            text += length
            if text > MAX_EXPANDED_TEXT:
                raise refuse(
                    node,
                    f"invalid YAML: more than {MAX_EXPANDED_TEXT:,} characters of values with "
                    "its aliases (*name) expanded; write the values out once",
                )
        if id(node) in seen:
            repeated += 1
            if repeated > MAX_ALIASED_VALUES:
                raise refuse(
                    node,
                    f"invalid YAML: aliases (*name) repeat more than {MAX_ALIASED_VALUES:,} "
                    "values; write the values out",
                )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            return
        ancestors.append(id(node))
        for child in children:
            walk(child, ancestors)
        ancestors.pop()

    walk(root, [])


def validate(model: type[M], document: YamlDocument) -> M:
    """Validate a document against `model` strictly; every error is reported with its line."""
    try:
        payload = json.dumps(document.data, allow_nan=True)
    except (TypeError, ValueError) as exc:
        message = f"only plain scalars, lists and mappings are allowed ({exc})"
        raise ManifestError(issues=(Issue(document.source, None, "", message),)) from None
    try:
        return model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise ManifestError(issues=issues_from(exc, model, document)) from None


def issues_from(
    error: ValidationError, model: type[BaseModel], document: YamlDocument
) -> tuple[Issue, ...]:
    """Turn pydantic's errors into located, readable Issues (one per error, in order)."""
    details = error.errors(include_url=False)
    # A misspelt required key gives "unknown key" and "missing"; the first says it all.
    suggested: set[tuple[tuple[str | int, ...], str]] = set()
    for detail in details:
        if detail["type"] == "extra_forbidden":
            parent, key = tuple(detail["loc"][:-1]), str(detail["loc"][-1])
            suggested.update((parent, k) for k in _close(key, known_keys(model, parent)))
    # A list whose only items are invalid is also "too short": the items' errors say it all.
    nested = {tuple(d["loc"][:i]) for d in details for i in range(len(d["loc"]))}
    issues = []
    for detail in details:
        loc = tuple(detail["loc"])
        if detail["type"] == "missing" and (loc[:-1], loc[-1]) in suggested:
            continue
        if detail["type"] == "too_short" and loc in nested:
            continue
        if detail["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            loc = (*loc, detail.get("ctx", {}).get("discriminator", "kind").strip("'"))
        loc = tuple(step for step in loc if step not in (BUILTIN, PLUGIN))  # branches: no keys
        line, path = document.locate(loc)
        issues.append(Issue(document.source, line, path, describe(detail, model)))
    return tuple(issues)


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


def describe(detail: ErrorDetails, model: type[BaseModel]) -> str:
    """A short message saying what is wrong and how to fix it."""
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    given = detail.get("input")
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, not {_type_name(given)}"
    if kind == "extra_forbidden":
        key = str(detail["loc"][-1])
        known = sorted(known_keys(model, detail["loc"][:-1]))
        if key in {"true", "false"}:
            return f"unknown key '{key}' (YAML reads unquoted on/off/yes/no as booleans)"
        message = f"unknown key '{key}'"
        close = _close(key, known)
        if close:
            message += f" (did you mean '{close[0]}'?)"
        return message + (f"; known keys: {', '.join(known)}" if known else "")
    if kind == "missing":
        return "required, but missing"
    if kind == "union_tag_invalid":
        tag = ctx.get("discriminator", "kind").strip("'")
        expected = _unquote(str(ctx.get("expected_tags", "")))
        return f"unknown {tag} '{ctx.get('tag')}'; known: {expected}"
    if kind == "union_tag_not_found":
        return "required, but missing"
    if kind == "literal_error":
        expected = _unquote(str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(given), expected.replace(" or ", ", ").split(", "))
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"'{given}' is not allowed{hint}; must be one of {expected}"
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        shown = limit if isinstance(limit, int) else f"{limit:g}"  # 1000000, not 1e+06
        return f"must be {bounds[kind]} {shown}, not {given}"
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    if kind == "finite_number":
        return "must be a finite number"
    message = detail["msg"]
    return message[:1].lower() + message[1:]


def known_keys(model: type[BaseModel], loc: Loc) -> set[str]:
    """The keys a mapping at `loc` accepts, found by walking the model's type annotations."""
    types_here: list[Any] = [model]
    for step in loc:
        types_here = [inner for tp in types_here for inner in _step(tp, step)]
    keys: set[str] = set()
    for tp in types_here:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys.update(field.alias or name for name, field in tp.model_fields.items())
    return keys


def _step(tp: Any, step: str | int) -> Iterator[Any]:
    """The annotation(s) reached from `tp` by one loc step (a key, an index, a union tag, or
    the branch of a union that admits plug-ins, `compressgate.recipes.spec`)."""
    if step in (BUILTIN, PLUGIN):
        for option in _options(tp):
            if getattr(option, "is_plugin", False) == (step == PLUGIN):
                yield option
        return
    for option in _options(tp):
        if isinstance(option, type) and issubclass(option, BaseModel):
            for name, field in option.model_fields.items():
                if step in (name, field.alias):
                    yield field.annotation
            tag = option.model_fields.get("kind") or option.model_fields.get("rule")
            if tag is not None and step in typing.get_args(tag.annotation):
                yield option  # a union tag: stay on this member
        origin = typing.get_origin(option)
        args = typing.get_args(option)
        if origin is tuple and isinstance(step, int) and args:
            yield args[0]
        elif origin is dict and isinstance(step, str) and len(args) == 2:
            yield args[1]


def _options(tp: Any) -> Iterator[Any]:
    """Unwrap Annotated and unions into the concrete annotations they allow."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from _options(typing.get_args(tp)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _options(arg)
    else:
        yield tp


def _close(word: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(word, list(candidates), n=1)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"{value} (a number)"
    if isinstance(value, str):
        return f"'{value}' (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unquote(text: str) -> str:
    return text.replace("'", "")


def _get(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    return _item(node, key)[1]


def _item(node: yaml.MappingNode, key: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    for key_node, value_node in node.value:
        if _scalar(key_node) == key:
            return key_node, value_node
    return None, None


def _scalar(node: yaml.Node | None) -> str | None:
    """A scalar's text, with unquoted booleans (on, yes, …) spelled as JSON spells them."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag == "tag:yaml.org,2002:bool":
        return "true" if yaml.SafeLoader.bool_values[node.value.lower()] else "false"
    return str(node.value)


def _duplicate_keys(node: yaml.Node, path: Loc) -> Iterator[tuple[Loc, int]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key is not None:
                if key in seen:
                    yield (*path, key), key_node.start_mark.line + 1
                seen.add(key)
            yield from _duplicate_keys(value_node, (*path, key if key is not None else "?"))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index))
