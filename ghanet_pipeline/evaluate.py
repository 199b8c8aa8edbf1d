"""Stage `evaluate`: out-of-fold comparison of every trained model.

Per model and fold, on the held-out patients only: Harrell's C-index (scikit-survival) and the
time-dependent AUC (cumulative/dynamic, at the training patients' event-time quartiles that lie
inside the held-out follow-up). Risk groups use cut-offs fixed on each fold's training patients
(median, or tertiles); Kaplan-Meier curves of the pooled held-out patients per group with a
log-rank test (lifelines). For G-HANet, how well each gene family's selected features are
reconstructed from the held-out slides (Pearson r over patients x features).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import GhanetError
from .io import atomic_path
from .risk import GROUPS, cutoffs_from, risk_group

log = logging.getLogger("ghanet.evaluate")


def c_index(time, event, risk) -> float:
    """Harrell's C (higher risk = earlier event); NaN where no pair is comparable."""
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event, bool)
    if not event.any():
        return float("nan")
    return float(concordance_index_censored(event, np.asarray(time, float), np.asarray(risk, float))[0])


def td_auc(train: pd.DataFrame, val: pd.DataFrame) -> float:
    """Mean cumulative/dynamic AUC at the training event-time quartiles inside the held-out range."""
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    ev_train = train.loc[train.censorship == 0, "survival_months"]
    if val.censorship.eq(0).sum() == 0 or len(ev_train) == 0:
        return float("nan")
    times = np.unique(np.quantile(ev_train, [0.25, 0.5, 0.75]))
    lo, hi = val.survival_months.min(), val.survival_months.max()
    times = times[(times >= lo) & (times < hi)]
    if len(times) == 0:
        return float("nan")
    y_train = Surv.from_arrays(train.censorship.eq(0).to_numpy(), train.survival_months.to_numpy())
    y_val = Surv.from_arrays(val.censorship.eq(0).to_numpy(), val.survival_months.to_numpy())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, mean_auc = cumulative_dynamic_auc(y_train, y_val, val.risk.to_numpy(), times)
    except ValueError:  # e.g. no case/control pair at any time: nothing to estimate
        return float("nan")
    return float(mean_auc)


def evaluate(risks: dict[tuple[str, int], pd.DataFrame], recons: dict[tuple[str, int], pd.DataFrame],
             scheme: str) -> dict[str, pd.DataFrame]:
    from lifelines.statistics import multivariate_logrank_test

    fold_rows, oof = [], []
    for (model, fold), df in sorted(risks.items()):
        train, val = df[df.split == "train"], df[df.split == "val"]
        if len(val) == 0:
            raise GhanetError(f"{model} fold {fold}: no held-out patient was scored")
        groups = risk_group(val.risk, cutoffs_from(train.risk), scheme)
        oof.append(val.assign(model=model, fold=fold, group=groups).reset_index())
        fold_rows.append({"model": model, "fold": fold, "n_val": len(val),
                          "n_events": int(val.censorship.eq(0).sum()),
                          "c_index": c_index(val.survival_months, val.censorship.eq(0), val.risk),
                          "td_auc": td_auc(train, val)})
    folds = pd.DataFrame(fold_rows)
    oof_df = pd.concat(oof, ignore_index=True)

    recon_rows = []
    for (model, fold), r in sorted(recons.items()):
        for family, g in r.groupby("family", sort=False):
            ok = len(g) > 2 and g.target.std() > 0 and g.predicted.std() > 0
            recon_rows.append({"model": model, "fold": fold, "family": family, "n_values": len(g),
                               "pearson_r": float(np.corrcoef(g.target, g.predicted)[0, 1]) if ok else np.nan})
    recon_df = pd.DataFrame(recon_rows, columns=["model", "fold", "family", "n_values", "pearson_r"])

    summary = []
    for model, f in folds.groupby("model", sort=False):
        o = oof_df[oof_df.model == model]
        present = o.group.nunique()
        p = (multivariate_logrank_test(o.survival_months, o.group, o.censorship.eq(0)).p_value
             if present > 1 else np.nan)
        row = {"model": model, "folds": len(f), "c_index_mean": f.c_index.mean(),
               "c_index_sd": f.c_index.std(ddof=1), "td_auc_mean": f.td_auc.mean(),
               "logrank_p": p, "n_patients": len(o),
               **{f"n_{g}": int((o.group == g).sum()) for g in GROUPS[scheme]}}
        rr = recon_df[recon_df.model == model]
        for family, g in rr.groupby("family", sort=False):
            row[f"recon_r_{family}"] = g.pearson_r.mean()
        summary.append(row)
    return {"comparison": pd.DataFrame(summary), "folds": folds, "oof": oof_df, "reconstruction": recon_df}


def plot_km(oof: pd.DataFrame, scheme: str, comparison: pd.DataFrame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter

    models = list(dict.fromkeys(oof.model))
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        o = oof[oof.model == model]
        for g in GROUPS[scheme]:
            sub = o[o.group == g]
            if len(sub):
                KaplanMeierFitter(label=f"{g} risk (n={len(sub)})").fit(
                    sub.survival_months, sub.censorship.eq(0)).plot_survival_function(ax=ax, ci_show=False)
        p = comparison.set_index("model").at[model, "logrank_p"]
        ax.set(title=f"{model}: log-rank p = {p:.3g}", xlabel="months", ylabel="survival probability",
               ylim=(0, 1.05))
    fig.suptitle("Held-out patients by predicted risk (cut-offs from each fold's training patients)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_c_index(folds: pd.DataFrame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(folds.model))
    fig, ax = plt.subplots(figsize=(1.8 * len(models) + 2, 4))
    for i, model in enumerate(models):
        c = folds.loc[folds.model == model, "c_index"]
        ax.scatter(np.full(len(c), i) + np.linspace(-0.1, 0.1, len(c)), c, color="0.4", zorder=3)
        ax.errorbar(i + 0.25, c.mean(), yerr=c.std(ddof=1) if len(c) > 1 else 0, fmt="D", color="C3",
                    capsize=4, zorder=4)
    ax.axhline(0.5, ls="--", color="0.6")
    ax.set(xticks=range(len(models)), xticklabels=models, ylabel="C-index (held-out fold)",
           title="C-index per fold (dots) and mean +- sd", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run(model_dirs: list[str], params: dict, *, out_dir) -> pd.DataFrame:
    """`model_dirs`: results/models/<model>/fold_<k> folders written by the train stage."""
    risks, recons = {}, {}
    for d in map(Path, model_dirs):
        model, fold = d.parent.name, int(d.name.split("_")[-1])
        path = d / "risks.csv"
        if not path.is_file():
            raise GhanetError(f"{path} not found; run the train stage for {model} fold {fold}")
        risks[(model, fold)] = pd.read_csv(path, index_col="case_id", dtype={"case_id": str})
        r = pd.read_csv(d / "reconstruction.csv", dtype={"case_id": str})
        if len(r):
            recons[(model, fold)] = r
    res = evaluate(risks, recons, params["risk_groups"])
    out = Path(out_dir)
    for name in ("comparison", "folds", "oof", "reconstruction"):
        with atomic_path(out / f"{name}.csv") as tmp:
            res[name].to_csv(tmp, index=False)
    plot_km(res["oof"], params["risk_groups"], res["comparison"], out / "km.png")
    plot_c_index(res["folds"], out / "c_index.png")
    for _, row in res["comparison"].iterrows():
        log.info("%s: C-index %.3f +- %.3f over %d folds, log-rank p %.3g", row.model, row.c_index_mean,
                 row.c_index_sd, row.folds, row.logrank_p)
    return res["comparison"]
