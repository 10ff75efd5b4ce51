"""Inputs (issue 22): what runs is what was signed, and no input takes the tool down.

Three groups, each in its own module: `inputs_code` (a package shadowing an installed one beside
a signed recipe, each signed subject swapped, deserialising factories and loaders),
`inputs_bounds` (YAML alias bombs up to 10 MB of expansion, with the peak memory of each case
measured, and compute beyond the recipe's budget) and `inputs_misc` (a naive-datetime waiver,
escape sequences reaching a terminal, URL-like workspace paths, git option injection, hostile
ONNX baselines, a report killed before it was recorded). Every case is refused or detected with
its documented exit code, one line and no traceback, and nothing written.
"""

from __future__ import annotations

from . import inputs_bounds, inputs_code, inputs_misc
from .common import Figure, Options

SECTION = "inputs"


def figures(options: Options) -> list[Figure]:
    out: list[Figure] = []
    for group in (inputs_code, inputs_bounds, inputs_misc):
        out += group.figures(options)
    return out
