"""The slide sheet: slide_id, case_id, path and optional mpp, one row per slide."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .config import validate_slide_row
from .errors import ConfigError


def read_slide_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a slide sheet; slide ids must be unique. Returns a DataFrame indexed by slide_id."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"slide sheet {path} not found; set cohort.slide_sheet to an existing CSV")
    try:
        df = pd.read_csv(path, dtype={"slide_id": str, "case_id": str, "path": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"slide sheet {path}: not a readable CSV ({exc})") from None
    missing = {"slide_id", "case_id", "path"} - set(df.columns)
    if missing:
        raise ConfigError(f"slide sheet {path}: missing column(s) {', '.join(sorted(missing))}; "
                          "required: slide_id, case_id, path (optional: mpp)")
    for i, row in enumerate(df.to_dict("records")):
        clean = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        validate_slide_row(clean, f"slide sheet {path}, row {i + 2}")
    dup = df["slide_id"][df["slide_id"].duplicated()].unique()
    if len(dup):
        raise ConfigError(f"slide sheet {path}: duplicate slide_id {', '.join(map(repr, dup[:5]))}; "
                          "each slide must appear once")
    if "mpp" not in df.columns:
        df["mpp"] = float("nan")
    return df.set_index("slide_id", drop=False)
