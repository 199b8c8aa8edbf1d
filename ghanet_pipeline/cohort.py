"""The cohort: MCAT/G-HANet clinical-genomic table, signatures, and their join with the slides.

Conventions (as in MCAT and G-HANet): one row per slide, patients by `case_id`, `censorship`
1 = censored (0 = event observed), `survival_months`, omic columns `<GENE>_rnaseq`, `<GENE>_cnv`,
`<GENE>_mut`. Every omic column is read (the official code drops the last one).

Every problem names the patient or slide and the fix. `on_problem: fail` stops at the first
kind of problem; `exclude` drops the patient or slide and reports it in the exclusions table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import GhanetError

OMIC_SUFFIXES = ("_rnaseq", "_cnv", "_mut")
REQUIRED = ("case_id", "survival_months")
STATUS = {"censorship": "1 = censored, 0 = event (MCAT)", "event": "1 = event, 0 = censored (STAMP, lifelines)"}


@dataclass
class Cohort:
    patients: pd.DataFrame  # index case_id: survival_months, censorship, slide_ids, omic columns
    omic_columns: list[str]
    exclusions: pd.DataFrame  # item, kind, reason


def omic_columns(columns) -> list[str]:
    return [c for c in columns if c.endswith(OMIC_SUFFIXES)]


def load_clinical(path: str | Path, status_column: str = "censorship") -> pd.DataFrame:
    """The clinical table with `censorship` (1 = censored), whichever status column it declares
    (cohort.status_column): an `event` column is turned into censorship = 1 - event."""
    path = Path(path)
    if not path.is_file():
        raise GhanetError(f"clinical table {path} not found; set cohort.clinical to the MCAT-format CSV")
    try:
        df = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise GhanetError(f"clinical table {path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise GhanetError(f"clinical table {path}: missing column(s) {', '.join(missing)}; the MCAT "
                          "format has case_id, slide_id, survival_months, censorship (1 = censored)")
    if status_column not in df.columns:
        other = next(c for c in STATUS if c != status_column)
        fix = (f"it has `{other}` ({STATUS[other]}): set cohort.status_column: {other} if that is what "
               "it means" if other in df.columns else "add it, or name the column you have in cohort.status_column")
        raise GhanetError(f"clinical table {path}: no `{status_column}` column, which cohort.status_column "
                          f"declares ({STATUS[status_column]}); {fix}")
    if status_column == "event":
        event = pd.to_numeric(df["event"], errors="coerce")
        # 1 - event keeps a bad value bad (2 -> -1), so the check of the status below still names it
        df["censorship"] = (1 - event).where(event.notna(), df["event"])
    # a table without omic columns is a survival-only cohort: the slide-only models still train
    df["case_id"] = df["case_id"].astype(str)
    return df


def load_signatures(path: str | Path) -> dict[str, list[str]]:
    """Family name -> gene symbols (one CSV column per family, blank-padded)."""
    path = Path(path)
    if not path.is_file():
        raise GhanetError(f"signatures {path} not found; set cohort.signatures to the six-family CSV")
    df = pd.read_csv(path, dtype=str)
    families = {c: [g.strip() for g in df[c].dropna() if g.strip()] for c in df.columns}
    if not families or not any(families.values()):
        raise GhanetError(f"signatures {path}: no gene symbols; expected one column of genes per family")
    return families


def family_columns(signatures: dict[str, list[str]], columns: list[str]) -> dict[str, list[str]]:
    """Each family's omic columns present in the table, in table order (a gene may be in several)."""
    available = set(columns)
    out = {}
    for family, genes in signatures.items():
        wanted = {g + s for g in genes for s in OMIC_SUFFIXES}
        out[family] = [c for c in columns if c in wanted and c in available]
    return out


def build_cohort(clinical: pd.DataFrame, slide_cases: dict[str, str] | None, on_problem: str,
                 source: str = "clinical table") -> Cohort:
    """Validate the table and collapse it to one row per patient.

    `slide_cases` maps slide_id -> case_id for the slides of the run (None: do not check slides).
    """
    problems: list[tuple[str, str, str]] = []  # (item, kind, reason)
    omics = omic_columns(clinical.columns)

    # non-numeric omic values are a broken file, not a patient problem: always an error
    text = [c for c in omics if not pd.api.types.is_numeric_dtype(clinical[c])]
    numeric = clinical[omics].copy()
    if text:
        numeric[text] = clinical[text].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & clinical[omics].notna()
    if bad.any().any():
        col = bad.any()[bad.any()].index[0]
        row = bad[col].idxmax()
        raise GhanetError(
            f"{source}: column {col} has a non-numeric value {clinical.at[row, col]!r} for patient "
            f"{clinical.at[row, 'case_id']}; omic columns must be numbers (fix or blank that cell)"
        )
    clinical = pd.concat([clinical.drop(columns=omics), numeric.astype(np.float64)], axis=1)
    clinical["survival_months"] = pd.to_numeric(clinical["survival_months"], errors="coerce")
    clinical["censorship"] = pd.to_numeric(clinical["censorship"], errors="coerce")

    outcomes = clinical[["case_id", "survival_months", "censorship"]]
    distinct = outcomes.drop_duplicates().groupby("case_id", sort=False).size()
    for case in distinct.index[distinct > 1]:
        problems.append((case, "conflicting outcomes",
                         f"patient {case}: its rows disagree on survival_months/censorship; "
                         "make them identical"))
    patients = clinical.drop_duplicates("case_id").set_index("case_id")
    surv, cens = patients["survival_months"], patients["censorship"]
    for case in surv.index[~(np.isfinite(surv) & (surv >= 0))]:
        problems.append((case, "bad survival", f"patient {case}: survival_months is {surv[case]}; "
                         "it must be a number >= 0"))
    for case in cens.index[~cens.isin([0, 1])]:
        problems.append((case, "bad censorship", f"patient {case}: censorship is {cens[case]}; it "
                         "must be 0 (event) or 1 (censored)"))
    nan = patients[omics].isna()
    for case in nan.index[nan.any(axis=1)]:
        first = nan.columns[nan.loc[case].to_numpy()][0]
        problems.append((case, "missing omics", f"patient {case}: {int(nan.loc[case].sum())} omic "
                         f"value(s) missing (e.g. {first}); fill them or exclude the patient"))

    if slide_cases is not None:
        with_slides = set(slide_cases.values())
        for case in patients.index:
            if case not in with_slides:
                problems.append((case, "patient without slides",
                                 f"patient {case} has no slide in the slide sheet; add its slides or "
                                 "exclude it"))
        for slide, case in slide_cases.items():
            if case not in patients.index:
                problems.append((slide, "slide without patient",
                                 f"slide {slide} belongs to {case}, who is not in the {source}; fix "
                                 "its case_id or add the patient"))
        patients["slide_ids"] = [";".join(sorted(s for s, c in slide_cases.items() if c == case))
                                 for case in patients.index]

    exclusions = pd.DataFrame(problems, columns=["item", "kind", "reason"])
    if problems and on_problem == "fail":
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise GhanetError(f"{source}: {problems[0][2]}{more}; or set cohort.on_problem: exclude to "
                          "drop and report them")
    dropped = {item for item, kind, _ in problems if kind != "slide without patient"}
    patients = patients.drop(index=[p for p in dropped if p in patients.index])
    if patients.empty:
        raise GhanetError(f"{source}: no patient left after exclusions; see the exclusions report")
    keep = ["survival_months", "censorship"] + (["slide_ids"] if slide_cases is not None else []) + omics
    patients = patients[keep]
    patients["censorship"] = patients["censorship"].astype(int)
    return Cohort(patients=patients, omic_columns=omics, exclusions=exclusions)
