"""The real-model examples as the e2e tests run them: signed at a smaller size, and run without
a network (inside an empty network namespace where one can be made)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.keys import generate_keypair, load_private_key

OWNERS = (("ml-platform", "author"), ("ml-lead", "approver"), ("serving", "approver"))


def offline(command: list[str]) -> list[str]:
    """`command` inside an empty network namespace when one can be made, else as it is."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return command
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    return [unshare, "-n", *command] if probe.returncode == 0 else command


def signed_example(tmp_path: Path, example: str, smaller: Mapping[str, str]) -> Path:
    """The bundled `example` in tmp_path/ws, each `smaller` text replaced (it must be there),
    its owners' keys trusted and the recipe signed by its author."""
    root = tmp_path / "ws"
    init_example(root, example)
    keys = tmp_path / "keys"
    for owner, role in OWNERS:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(root / "trust.yaml", owner, public, (role,))  # type: ignore[arg-type]
    recipe = root / "recipe.yaml"
    text = recipe.read_text()
    for old, new in smaller.items():
        assert old in text, old
        text = text.replace(old, new)
    recipe.write_text(text)
    sign_recipe(recipe, load_private_key(keys / "ml-platform.key"))
    return recipe
