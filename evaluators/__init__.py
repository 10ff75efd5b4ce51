"""Metric computation and statistics over arrays, and the runners that produce them.

The low-level functions below are a stable API: plain numpy float64 arrays in, floats or tuples
out. Other parts of compressgate and outside audits call exactly these names. They are loaded on
first use, so `import evaluators` stays cheap (no numpy, scipy or torch until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compressgate.evaluators.calibration import brier, classwise_ece, ece, mce, nll, rmsce
    from compressgate.evaluators.fairness import (
        demographic_parity_difference,
        equal_opportunity_difference,
        equalized_odds_difference,
        group_accuracy,
    )
    from compressgate.evaluators.fidelity import agreement, flip_rates, kl_divergence
    from compressgate.evaluators.paired import mcnemar, non_inferiority, paired_difference_ci
    from compressgate.evaluators.stats import holm, quantile_ci

_HOME = {
    "ece": "calibration",
    "mce": "calibration",
    "rmsce": "calibration",
    "classwise_ece": "calibration",
    "brier": "calibration",
    "nll": "calibration",
    "demographic_parity_difference": "fairness",
    "equalized_odds_difference": "fairness",
    "equal_opportunity_difference": "fairness",
    "group_accuracy": "fairness",
    "mcnemar": "paired",
    "paired_difference_ci": "paired",
    "non_inferiority": "paired",
    "quantile_ci": "stats",
    "holm": "stats",
    "agreement": "fidelity",
    "kl_divergence": "fidelity",
    "flip_rates": "fidelity",
}

__all__ = [
    "agreement",
    "brier",
    "classwise_ece",
    "demographic_parity_difference",
    "ece",
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "flip_rates",
    "group_accuracy",
    "holm",
    "kl_divergence",
    "mce",
    "mcnemar",
    "nll",
    "non_inferiority",
    "paired_difference_ci",
    "quantile_ci",
    "rmsce",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'evaluators' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
