"""The slide sheet: slide_id, case_id, path and optional mpp, one row per slide; any other
column is kept (text). A relative path is taken from the sheet's folder, so a sheet and its
slides can move together.

Standard library only (plus jsonschema, through config): the Snakefile reads the sheet in the
user's Snakemake environment, which has no pandas.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zipfile
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


# what MCAT's slide_id carries after the name its feature files have (TCGA-...-DX1.<uuid>.svs -> .pt)
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".czi")


def open_table(path: str | Path):
    """A text handle on a CSV kept as .csv, .csv.gz or MCAT's .csv.zip (the first member)."""
    path = str(path)
    if path.endswith(".zip"):
        z = zipfile.ZipFile(path)
        return io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8-sig", newline="")
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def table_header(path: str | Path) -> list[str] | None:
    """The CSV's column names; None where the file is not there (yet) or not a table."""
    try:
        with open_table(path) as fh:
            return next(csv.reader(fh))
    except (OSError, StopIteration, zipfile.BadZipFile, IndexError, UnicodeDecodeError, csv.Error):
        return None


def slides_from_clinical(path: str | Path) -> dict[str, dict]:
    """slide_id -> {slide_id, case_id, path None, mpp None} from the clinical table's slide_id column
    (MCAT's layout: one row per slide), the slide file's extension dropped: the names MCAT's and
    CLAM's feature files have. For a cohort given as features without a slide sheet."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"clinical table {path} not found; set cohort.clinical to the MCAT-format CSV")
    with open_table(path) as fh:
        reader = csv.DictReader(fh)
        if not {"slide_id", "case_id"} <= set(reader.fieldnames or []):
            raise ConfigError(f"clinical table {path}: no slide_id column to name the feature files by; "
                              "add one (MCAT's layout) or give cohort.slide_sheet")
        slides = {}
        for rec in reader:
            name = (rec["slide_id"] or "").strip()
            if not name:
                continue
            stem = name[: -len(s)] if (s := next((x for x in SLIDE_SUFFIXES if name.lower().endswith(x)), "")) else name
            slides[stem] = {"slide_id": stem, "case_id": rec["case_id"].strip(), "path": None, "mpp": None}
    if not slides:
        raise ConfigError(f"clinical table {path}: its slide_id column is empty; fill it or give cohort.slide_sheet")
    return slides


def cohort_slides(slide_sheet, clinical) -> dict[str, dict]:
    """The cohort's slides: the slide sheet's, or (features given without one) the clinical table's."""
    return read_slides(slide_sheet) if slide_sheet else slides_from_clinical(clinical)
