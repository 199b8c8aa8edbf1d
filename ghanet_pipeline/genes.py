"""Stage `genes`: per fold, the differentially expressed omic features of each gene family.

Fitted on the fold's training patients only: the time bins (by default), the scaler and the
tests. High risk = uncensored with bin < n_bins/2, low risk = bin >= n_bins/2 (censored or not);
Welch's t-test per feature, vectorised over all features at once; keep p < alpha, optionally after
Benjamini-Hochberg. A family never ends empty: it keeps its `min_features` most significant
features, and the selection says so.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import commands, splits
from .cohort import family_columns, load_signatures
from .errors import GhanetError
from .io import atomic_path, write_json

log = logging.getLogger("ghanet.genes")


def select(patients: pd.DataFrame, train_ids, families: dict[str, list[str]], params: dict,
           labels: dict) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    missing = [p for p in train_ids if p not in patients.index]
    if missing:
        raise GhanetError(f"fold names training patient {missing[0]}, who is not in the cohort table")
    train = patients.loc[list(train_ids)]
    omics = sorted({c for cols in families.values() for c in cols}, key=list(patients.columns).index)
    n_bins = labels["n_bins"]
    fit = train if labels["fit_on"] == "train" else patients
    edges = splits.fit_bins(fit["survival_months"], fit["censorship"], n_bins, patients["survival_months"])
    bins = splits.assign_bins(train["survival_months"], edges)
    uncensored = train["censorship"].to_numpy() == 0
    high, low = uncensored & (bins < n_bins // 2), bins >= n_bins // 2

    X = train[omics].to_numpy(np.float64)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays 0 after scaling
    Z = (X - mean) / std
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # features constant within a group warn about precision; their p-value is handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        t, p = stats.ttest_ind(Z[high], Z[low], axis=0, equal_var=False)
    p = np.where(np.isfinite(p), p, 1.0)  # constant in both groups, or a group too small: no evidence
    t = np.where(np.isfinite(t), t, 0.0)
    p_adj = stats.false_discovery_control(p, method="bh") if params["correction"] == "bh" else p

    table = pd.DataFrame({"feature": omics, "t": t, "p": p, "p_adj": p_adj}).set_index("feature")
    selected, fallback = {}, []
    for family, cols in families.items():
        if not cols:
            raise GhanetError(f"gene family {family!r} has no column in the cohort table; check the "
                              "signatures file against the <GENE>_rnaseq/_cnv/_mut columns")
        sub = table.loc[cols]
        keep = sub.index[sub["p_adj"] < params["alpha"]].tolist()
        if not keep:
            keep = sub.sort_values(["p_adj", "p"], kind="stable").index[: params["min_features"]].tolist()
            fallback.append(family)
            log.warning("family %s: no feature with p < %s; keeping its %d most significant",
                        family, params["alpha"], len(keep))
        selected[family] = keep
    member = {f: set(cols) for f, cols in families.items()}
    table["families"] = [";".join(f for f, cols in member.items() if c in cols) for c in table.index]
    kept = set().union(*map(set, selected.values()))
    table["selected"] = table.index.isin(list(kept))
    scaler = pd.DataFrame({"feature": omics, "mean": mean, "std": std}).set_index("feature")
    selection = {
        "families": selected, "sizes": {f: len(v) for f, v in selected.items()},
        "fallback_families": fallback, "bin_edges": edges.tolist(), "n_bins": n_bins,
        "bins_fit_on": labels["fit_on"], "alpha": params["alpha"], "correction": params["correction"],
        "n_train": len(train), "n_high_risk": int(high.sum()), "n_low_risk": int(low.sum()),
        "family_columns": families,  # every column of each family: MCAT's input
    }
    return selection, table, scaler


def run(patients_csv, fold_csv, signatures_path, params: dict, labels: dict, *, out_dir, fold: int) -> dict:
    patients = splits.read_patients(patients_csv)
    train_ids, val_ids = splits.read_fold(fold_csv)
    # no signatures: a survival-only cohort, whose selection holds the time bins and no family
    families = family_columns(load_signatures(signatures_path), list(patients.columns)) if signatures_path else {}
    selection, table, scaler = select(patients, train_ids, families, params, labels)
    selection.update(fold=fold, n_val=len(val_ids))
    out = Path(out_dir)
    with atomic_path(out / "stats.csv") as tmp:
        table.to_csv(tmp)
    with atomic_path(out / "scaler.csv") as tmp:
        scaler.to_csv(tmp)
    write_json(out / "selection.json", selection)
    log.info("fold %d: %s", fold, ", ".join(f"{f}: {n}" for f, n in selection["sizes"].items())
             or "no omics (survival only): time bins only")
    return selection


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--patients", required=True, help="patients.csv.gz written by `ghanet splits`")
    p.add_argument("--fold-csv", required=True, help="fold file (train, val columns)")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--signatures", default=None,
                   help="six-family signatures CSV (none: a survival-only cohort, time bins only)")
    p.add_argument("--out-dir", required=True)


def _run(args) -> None:
    cfg = commands.sections(args)
    run(args.patients, args.fold_csv, args.signatures, cfg["genes"], cfg["labels"], out_dir=args.out_dir,
        fold=args.fold)


COMMANDS = {"genes": commands.Command(_arguments, _run)}
