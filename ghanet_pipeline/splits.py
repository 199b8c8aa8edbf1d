"""Stage `splits`: the validated cohort, survival-time bins, and patient-level folds.

One job writes `patients.csv.gz` (one row per patient: outcome, slide ids, omics), the exclusions
report and MCAT-format fold files (`train`, `val` columns of case ids). Every per-fold job reads
these files; nothing downstream re-reads the raw clinical table.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import commands
from .cohort import build_cohort, load_clinical
from .errors import GhanetError
from .io import atomic_path, write_json
from .sheet import cohort_slides

log = logging.getLogger("ghanet.splits")
EPS = 1e-6  # as MCAT: outer bin edges sit just outside the observed range


def fit_bins(survival: np.ndarray, censorship: np.ndarray, n_bins: int, cover: np.ndarray) -> np.ndarray:
    """Bin edges: quantiles of the uncensored survival times; outer edges stretched to `cover`.

    Bins are left-closed [e_i, e_{i+1}) as in MCAT/G-HANet. Fit on a fold's training patients
    (ours) or on the whole cohort (the official code).
    """
    uncensored = np.asarray(survival)[np.asarray(censorship) == 0]
    if len(uncensored) < n_bins:
        raise GhanetError(f"only {len(uncensored)} uncensored patient(s) to fit {n_bins} time bins; "
                          "use fewer bins (labels.n_bins) or more patients")
    try:
        _, edges = pd.qcut(uncensored, q=n_bins, retbins=True, labels=False)
    except ValueError as exc:
        raise GhanetError(f"cannot fit {n_bins} time bins: tied survival times ({exc}); use fewer bins") from None
    edges = np.asarray(edges, np.float64)
    edges[0] = float(np.min(cover)) - EPS
    edges[-1] = float(np.max(cover)) + EPS
    return edges


def assign_bins(survival, edges: np.ndarray) -> np.ndarray:
    """Bin index per patient; times outside the fitted range fall in the first or last bin."""
    inner = np.asarray(edges[1:-1])
    return np.searchsorted(inner, np.asarray(survival, np.float64), side="right").astype(int)


def make_folds(patients: pd.DataFrame, k: int, seed: int, n_bins: int) -> tuple[list, str]:
    """Stratified patient-level K-fold (bin x censorship); coarser strata when classes are too small."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if len(patients) < k:
        raise GhanetError(f"{len(patients)} patients cannot make {k} folds; lower splits.folds")
    surv, cens = patients["survival_months"].to_numpy(), patients["censorship"].to_numpy()
    strata_options = []
    try:
        bins = assign_bins(surv, fit_bins(surv, cens, n_bins, surv))
        strata_options.append(("bin x censorship", bins * 2 + cens))
    except GhanetError:
        pass
    strata_options.append(("censorship", cens))
    ids = patients.index.to_numpy()
    for name, strata in strata_options:
        # rare classes are spread as evenly as they can be (sklearn warns; that is fine here)
        if np.bincount(strata).max() >= k:
            skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return [(ids[tr], ids[va]) for tr, va in skf.split(ids, strata)], name
    kf = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(ids[tr], ids[va]) for tr, va in kf.split(ids)], "none (classes too small)"


def read_split_files(split_dir: str | Path, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    folds = []
    for i in range(k):
        path = Path(split_dir) / f"splits_{i}.csv"
        if not path.is_file():
            raise GhanetError(f"split file {path} not found; splits.split_dir needs splits_0.csv .. "
                              f"splits_{k - 1}.csv (MCAT format), or lower splits.folds")
        df = pd.read_csv(path, dtype=str)
        if not {"train", "val"} <= set(df.columns):
            raise GhanetError(f"split file {path}: needs `train` and `val` columns of case ids")
        train, val = df["train"].dropna().to_numpy(), df["val"].dropna().to_numpy()
        overlap = set(train) & set(val)
        if overlap:
            raise GhanetError(f"split file {path}: patient {sorted(overlap)[0]} is in both train and val; "
                              "list each patient in one column only")
        folds.append((train, val))
    return folds


def write_fold(path, train, val) -> None:
    n = max(len(train), len(val))
    df = pd.DataFrame({"train": pd.Series(list(train), dtype=object).reindex(range(n)),
                       "val": pd.Series(list(val), dtype=object).reindex(range(n))})
    with atomic_path(path) as tmp:
        df.to_csv(tmp)


def read_fold(path) -> tuple[list[str], list[str]]:
    df = pd.read_csv(path, dtype=str)
    return df["train"].dropna().tolist(), df["val"].dropna().tolist()


def run(clinical_path, slide_cases: dict[str, str], params: dict, cohort_params: dict, labels: dict, *,
        out_dir) -> dict:
    out = Path(out_dir)
    cohort = build_cohort(load_clinical(clinical_path, cohort_params["status_column"]), slide_cases,
                          cohort_params["on_problem"],
                          source=f"clinical table {clinical_path}")
    patients = cohort.patients
    k = params["folds"]
    if params["split_dir"]:
        folds = read_split_files(params["split_dir"], k)
        known = set(patients.index)
        cleaned, rows = [], []
        for i, (tr, va) in enumerate(folds):
            unknown = [p for p in list(tr) + list(va) if p not in known]
            if unknown and cohort_params["on_problem"] == "fail":
                raise GhanetError(f"split file splits_{i}.csv names patient {unknown[0]}, who is not in "
                                  "the cohort (or was excluded); fix the split or set cohort.on_problem: exclude")
            rows += [(p, "not in cohort", f"split {i} names {p}, who is not in the cohort") for p in unknown]
            cleaned.append(([p for p in tr if p in known], [p for p in va if p in known]))
        folds, stratified = cleaned, "given split files"
        if rows:
            cohort.exclusions = pd.concat([cohort.exclusions, pd.DataFrame(
                rows, columns=["item", "kind", "reason"]).drop_duplicates("item")], ignore_index=True)
    else:
        folds, stratified = make_folds(patients, k, params["seed"], labels["n_bins"])

    with atomic_path(out / "patients.csv.gz") as tmp:
        patients.to_csv(tmp, compression="gzip")
    with atomic_path(out / "exclusions.csv") as tmp:
        cohort.exclusions.to_csv(tmp, index=False)
    for i, (tr, va) in enumerate(folds):
        write_fold(out / f"fold_{i}.csv", tr, va)
    summary = {"patients": len(patients), "omic_columns": len(cohort.omic_columns), "folds": k,
               "stratified_by": stratified, "excluded": len(cohort.exclusions),
               "val_sizes": [len(va) for _, va in folds], "seed": params["seed"]}
    write_json(out / "splits.json", summary)
    log.info("cohort: %d patients, %d omic columns, %d excluded; %d folds stratified by %s",
             len(patients), len(cohort.omic_columns), len(cohort.exclusions), k, stratified)
    return summary


def read_patients(path) -> pd.DataFrame:
    return pd.read_csv(path, index_col="case_id", dtype={"case_id": str, "slide_ids": str})


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--clinical", required=True, help="MCAT-format clinical/genomic CSV")
    p.add_argument("--slide-sheet", default=None,
                   help="slide sheet (slide_id, case_id, path); none: the clinical table's slide_id column")
    p.add_argument("--out-dir", required=True)


def _run(args) -> None:
    cfg = commands.sections(args)
    slides = cohort_slides(args.slide_sheet, args.clinical)
    run(args.clinical, {sid: row["case_id"] for sid, row in slides.items()}, cfg["splits"], cfg["cohort"],
        cfg["labels"], out_dir=args.out_dir)


COMMANDS = {"splits": commands.Command(_arguments, _run)}
