"""The slide sheet: slide_id, case_id, path and optional mpp, one row per slide; any other
column is kept (text). A relative path is taken from the sheet's folder, so a sheet and its
slides can move together.

Standard library only (plus jsonschema, through config): the Snakefile reads the sheet in the
user's Snakemake environment, which has no pandas.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from .config import validate_slide_row
from .errors import ConfigError

REQUIRED = ("slide_id", "case_id", "path")
COLUMNS = (*REQUIRED, "mpp")


def _number(text: str, where: str):
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: mpp {text!r} is not a number; give microns per pixel "
                          "(e.g. 0.25 or 0.5) or leave it empty") from None


def read_slides(path: str | Path) -> dict[str, dict]:
    """Read and validate a slide sheet: slide_id -> {slide_id, case_id, path, mpp (float or None),
    any other column}, in the sheet's order; slide ids must be unique; relative paths are joined
    to the sheet's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"slide sheet {path} not found; set cohort.slide_sheet to an existing CSV")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            records = list(reader)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"slide sheet {path}: not a readable CSV ({exc})") from None
    missing = set(REQUIRED) - set(columns)
    if missing:
        raise ConfigError(f"slide sheet {path}: missing column(s) {', '.join(sorted(missing))}; "
                          "required: slide_id, case_id, path (optional: mpp)")
    slides: dict[str, dict] = {}
    dup = []
    for i, rec in enumerate(records):
        where = f"slide sheet {path}, row {i + 2}"
        row = {k: v.strip() for k, v in rec.items() if k is not None and v is not None and v.strip() != ""}
        if "mpp" in row:
            row["mpp"] = _number(row["mpp"], where)
            if math.isnan(row["mpp"]):
                del row["mpp"]
        validate_slide_row(row, where)
        if not os.path.isabs(row["path"]):
            beside = os.path.normpath(os.path.join(path.parent, row["path"]))
            # a sheet written before paths were the sheet's (relative to the working folder, as old
            # demo results are) still reads where only that reading names an existing file
            if os.path.exists(beside) or not os.path.exists(row["path"]):
                row["path"] = beside
        if row["slide_id"] in slides:
            dup.append(row["slide_id"])
        slides[row["slide_id"]] = {**row, "mpp": row.get("mpp")}
    if dup:
        raise ConfigError(f"slide sheet {path}: duplicate slide_id {', '.join(map(repr, dup[:5]))}; "
                          "each slide must appear once")
    return slides
