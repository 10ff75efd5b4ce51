"""What makes a run repeatable and its records comparable: deterministic torch kernels on a
fixed thread count, every random generator seeded from one number, the canonical digest that
keys, fingerprints and data are taken with, and the UTC timestamps (to the second) the run
record carries.

Every stage runs under `deterministic(THREADS)`: `torch.use_deterministic_algorithms(True)` and
one intra-op thread in torch and onnxruntime. On one machine and one environment the reference
recipe then reproduces bit for bit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from compressgate.registry.kernel.digests import sha256_bytes

THREADS = 1


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic torch kernels and a fixed thread count, restored afterwards."""
    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


def threads() -> dict[str, int]:
    """The thread counts in force, as the environment fingerprint records them."""
    return {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "onnxruntime_intra_op": THREADS,
        "onnxruntime_inter_op": 1,
    }


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators, all from `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def digest(value: Any) -> str:
    """sha256 of `value` as compact JSON with sorted keys: the form of every key and digest
    the engine records (stage specs, data, fingerprints, cache and evaluation keys)."""
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def now() -> str:
    """The current UTC time as the run record writes it: `2026-11-23T10:00:00Z`."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
