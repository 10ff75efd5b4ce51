"""A recipe read, parsed and (for a run) verified once, handed down instead of its path.

The workspace prepares a recipe once per command: the manifest's bytes are read once, parsed
once and, for anything that runs it, checked against the trust file once. The layers below take
the `PreparedRecipe` and never read the manifest or the trust file again. What is derived from
the recipe and costs real work is kept on it, computed at most once:

- each seed's data (`splits(seed)`): the recipe's loader, imported only from the trust file's
  allow-listed modules, runs once per seed, whether the power check or the engine asks first;
- the statistical gates' power checks (`power()`), at the first seed's test split sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compressgate.recipes.trust import DEFAULT_MODULES

if TYPE_CHECKING:
    from compressgate.gates.power import PowerCheck, SampleSizes
    from compressgate.recipes.data import Splits
    from compressgate.recipes.load import LoadedRecipe
    from compressgate.recipes.manifest import Recipe
    from compressgate.recipes.models import SignedSource
    from compressgate.recipes.signing import Signer, VerifiedRecipe
    from compressgate.recipes.trust import Trust


@dataclass
class PreparedRecipe:
    """A loaded recipe with its trust (if any) and, when verified, its signature."""

    loaded: LoadedRecipe
    trust: Trust | None = None
    trust_source: str | None = None  # where the trust came from (a file's path)
    verified: VerifiedRecipe | None = None
    _splits: dict[int, Splits] = field(default_factory=dict, repr=False)
    _checks: dict[str, PowerCheck | None] | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def base(self) -> Path:
        """The recipe's folder, resolved: files it names are found here."""
        return self.loaded.path.parent.resolve()

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @property
    def sha256(self) -> str:
        return self.loaded.sha256

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules factories and loaders may be imported from."""
        return self.trust.modules if self.trust is not None else DEFAULT_MODULES

    @property
    def sources(self) -> dict[str, SignedSource] | None:
        """A verified recipe's local modules, each pinned to its signed bytes (None: not
        verified, so a local module is pinned to its bytes when it is imported)."""
        return self.verified.sources if self.verified is not None else None

    @property
    def signers(self) -> tuple[Signer, ...]:
        return self.verified.signers if self.verified is not None else ()

    def splits(self, seed: int) -> Splits:
        """The recipe's data for `seed`, loaded once (a failing loader is a StageError)."""
        if seed not in self._splits:
            from compressgate.recipes.data import load_splits
            from compressgate.recipes.models import allowed_modules

            with allowed_modules(self.modules, self.sources):
                self._splits[seed] = load_splits(self.recipe, self.base, seed)
        return self._splits[seed]

    def sample_sizes(self) -> SampleSizes:
        """The first seed's test split sizes, which the gates' power is judged at."""
        from compressgate.gates.power import sample_sizes

        return sample_sizes(self.splits(self.recipe.seeds[0]))

    def checks(self) -> dict[str, PowerCheck | None]:
        """Every gate's power check (None where no analysis applies), computed once."""
        if self._checks is None:
            from compressgate.gates.power import check_gates

            gated = bool(self.recipe.gates)
            self._checks = check_gates(self.recipe, self.sample_sizes()) if gated else {}
        return self._checks

    def power(self) -> list[PowerCheck]:
        """The analysable statistical gates' power checks, as `recipe validate` shows them."""
        from compressgate.gates.power import check_recipe

        if not self.recipe.gates:
            return []
        return check_recipe(self.recipe, self.sample_sizes(), self.checks())

    def power_of(self, gate: str) -> PowerCheck | None:
        """The power check of the gate named `gate` (None where no analysis applies)."""
        return self.checks().get(gate)
