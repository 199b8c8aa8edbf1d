"""Risk groups, shared by train (cut-offs fixed on the training patients), evaluate and predict."""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUPS = {"median": ["low", "high"], "tertiles": ["low", "intermediate", "high"]}


def cutoffs_from(train_risk: pd.Series) -> dict:
    return {"median": float(train_risk.median()),
            "tertiles": [float(q) for q in train_risk.quantile([1 / 3, 2 / 3])]}


def risk_group(risk, cutoffs: dict, scheme: str) -> np.ndarray:
    """Group labels; a risk equal to a cut-off goes to the higher group."""
    edges = [cutoffs["median"]] if scheme == "median" else list(cutoffs["tertiles"])
    idx = np.searchsorted(np.asarray(edges), np.asarray(risk, float), side="right")
    return np.asarray(GROUPS[scheme], dtype=object)[idx]
