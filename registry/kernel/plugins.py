"""One explicit registry per plug-in family (stages now, evaluators later).

Names are registered by decorator; a duplicate raises, and a miss lists the known names. No
package walking and no metaclass magic: what is registered is what an import put there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from compressgate.registry.kernel.errors import ManifestError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → plug-in table for one family (`family` is used in messages)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.family} kind {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ManifestError(
                f"unknown {self.family} kind {name!r}; known: {', '.join(self.kinds())}"
            ) from None

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))
