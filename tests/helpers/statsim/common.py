"""What every simulation family shares: its options, the row it reports, and binomial errors.

A row is one claim checked by simulation:

- `false pass`: a candidate sitting exactly at the gate's threshold (the boundary of the null
  hypothesis) passed in `measured` of `reps` simulated datasets; the gate declares at most
  `declared` (its one-sided 1 - confidence). Met when measured <= declared + 2 SE.
- `coverage`: an interval held the true value in `measured` of `reps` datasets; it declares
  `declared`. Met when measured >= declared - 2 SE. An interval labelled with a lower coverage
  than asked (too few calls for a tail percentile) declares what it is labelled with.
- `power`: the gate passed a truly equal candidate in `measured` of `reps` datasets; `validate`
  said `declared`. Met when |measured - declared| <= 0.05 (the acceptance's ±5 points), widened
  by 2 SE of the simulation itself.
- `power floor`: `validate` said the power is at least `declared` (the least favourable case
  of its planning model); met when measured >= declared - 0.05 - 2 SE.

SE is the binomial standard error sqrt(p (1 - p) / reps) at the declared rate (at the measured
one for power), so that a rate of exactly 0 does not claim a zero error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Quantity = Literal["false pass", "coverage", "power", "power floor"]


@dataclass(frozen=True)
class Options:
    """How large a simulation: `scale` 1.0 for the figures in docs, about 0.1 for CI (`--quick`),
    less in unit tests; `seed` makes every family reproducible."""

    scale: float = 1.0
    seed: int = 0
    folder: Path | None = None

    def reps(self, full: int, least: int = 50) -> int:
        """`full` simulated datasets at scale 1.0, scaled down (never below `least`)."""
        return max(least, round(full * self.scale))


def binomial_se(p: float, reps: int) -> float:
    """The standard error of a rate p estimated from `reps` independent trials."""
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 1e-12) / reps)


@dataclass(frozen=True)
class Row:
    """One simulated claim: what was declared and what the simulation measured."""

    family: str
    case: str
    quantity: Quantity
    declared: float
    measured: float
    reps: int
    n: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def se(self) -> float:
        at = self.measured if self.quantity.startswith("power") else self.declared
        return binomial_se(at, self.reps)

    @property
    def met(self) -> bool:
        if self.quantity == "false pass":
            return self.measured <= self.declared + 2 * self.se
        if self.quantity == "coverage":
            return self.measured >= self.declared - 2 * self.se
        if self.quantity == "power floor":
            return self.measured >= self.declared - 0.05 - 2 * self.se
        return abs(self.measured - self.declared) <= 0.05 + 2 * self.se

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "se": self.se, "met": self.met}
