"""Stage `evaluate`: out-of-fold comparison of every trained model.

Per model and fold, on the held-out patients only: Harrell's C-index (scikit-survival) and the
time-dependent AUC (cumulative/dynamic, at the training patients' event-time quartiles that lie
inside the held-out follow-up). Risk groups use cut-offs fixed on each fold's training patients
(median, or tertiles); Kaplan-Meier curves of the pooled held-out patients per group with a
log-rank test (lifelines). For G-HANet, how well each gene family's selected features are
reconstructed from the held-out slides (Pearson r over patients x features).

Uncertainty: the C-index's 95% interval is a bootstrap of the statistic the table reports (the
mean over folds of each held-out fold's C-index), with patients resampled within each fold; each
pair of models is compared on the patients every model scored, with the same resamples for both (a
paired bootstrap of the difference: its 95% interval and a two-sided bootstrap p-value). The
hazard ratio of high vs low risk comes from a Cox model on the group (lifelines).

The table lists the models grouped as the registry groups them (slide-only, genomics-only,
multimodal); each model is compared with G-HANet and with ABMIL (where they were trained), not
every pair with every other: with ten models that would be 45 bootstraps and a figure no one reads.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import models as registry
from . import commands, plots
from .errors import GhanetError
from .io import atomic_path
from .risk import GROUPS, cutoffs_from, risk_group

BOOTSTRAP, BOOTSTRAP_SEED = 1000, 0  # resamples of the C-index intervals, and their seed

log = logging.getLogger("ghanet.evaluate")


def c_index(time, event, risk) -> float:
    """Harrell's C (higher risk = earlier event); NaN where no pair is comparable.

    scikit-survival's definition: (i, j) is comparable when i has the event and j outlives it, or
    is censored at the same time; concordant when i's risk is higher, half when the risks tie
    (within 1e-8). Up to 2,000 patients it is counted here on the n x n pairs at once, the same
    numbers (tested), since the bootstrap calls it thousands of times and scikit-survival's loop
    over events costs ~0.5 ms a call; larger sets go to scikit-survival."""
    from sksurv.metrics import concordance_index_censored

    from sksurv.exceptions import NoComparablePairException

    event = np.asarray(event, bool)
    if not event.any():
        return float("nan")
    if len(event) <= 2000:
        t, r = np.asarray(time, float), np.asarray(risk, float)
        later = t[None, :] > t[:, None]
        same_censored = (t[None, :] == t[:, None]) & ~event[None, :]
        comparable = event[:, None] & (later | same_censored)
        n = comparable.sum()
        if n == 0:
            return float("nan")
        tied = np.abs(r[None, :] - r[:, None]) <= 1e-8
        concordant = (r[None, :] < r[:, None]) & ~tied
        return float(((concordant & comparable).sum() + 0.5 * (tied & comparable).sum()) / n)
    try:
        return float(concordance_index_censored(event, np.asarray(time, float), np.asarray(risk, float))[0])
    except NoComparablePairException:  # a bootstrap resample of a tiny fold, say
        return float("nan")


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


def fold_mean_c_index(folds: list[pd.DataFrame], col: str = "risk") -> float:
    """The mean over folds of each fold's C-index (folds without an event are left out)."""
    cs = [c_index(f.survival_months, f.censorship.eq(0), f[col]) for f in folds]
    cs = [c for c in cs if not np.isnan(c)]
    return float(np.mean(cs)) if cs else float("nan")


def bootstrap_c_index(folds: list[pd.DataFrame], cols: list[str], n: int = BOOTSTRAP,
                      seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """n x len(cols) bootstrap replicates of fold_mean_c_index for each risk column, the patients
    of each fold resampled with replacement; draw order: for each replicate, fold by fold,
    `rng.integers(0, n_fold, n_fold)`. The same resamples serve every column (paired)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(cols)))
    # plain arrays: pandas indexing in this loop cost more than the C-indices themselves
    arrays = [(f.survival_months.to_numpy(float), f.censorship.eq(0).to_numpy(), f[cols].to_numpy(float))
              for f in folds]
    for b in range(n):
        per_fold = []
        for t, e, r in arrays:
            i = rng.integers(0, len(t), len(t))
            per_fold.append([c_index(t[i], e[i], r[i, j]) for j in range(len(cols))])
        cs = np.array(per_fold).reshape(len(arrays), len(cols))
        with warnings.catch_warnings():  # a resample of a tiny fold may have no comparable pair: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[b] = np.nanmean(cs, axis=0) if len(cs) else np.nan
    return out


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    return tuple(np.percentile(values, [2.5, 97.5])) if len(values) else (np.nan, np.nan)


def paired_p(diff: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference being zero: twice the smaller tail."""
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return float("nan")
    return float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean())))


def format_p(p: float, n: int = BOOTSTRAP) -> str:
    """A bootstrap p-value as reported: n resamples cannot resolve a p below 1/n, so a difference
    whose draws all fall on one side is `< 1/n`, never `0`."""
    if p != p:  # NaN: no pair to compare
        return ""
    return f"< {1 / n:g}" if p < 1 / n else f"{p:.3g}"


def _p_text(p: float) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def hazard_ratio(o: pd.DataFrame) -> tuple[float, float, float]:
    """Hazard ratio of the high vs the low risk group (Cox model on the group), with its 95% CI."""
    from lifelines import CoxPHFitter

    two = o[o.group.isin(["low", "high"])]
    if two.group.nunique() < 2 or two.censorship.eq(0).sum() < 2:
        return (np.nan, np.nan, np.nan)
    df = pd.DataFrame({"T": two.survival_months, "E": two.censorship.eq(0).astype(int),
                       "high": two.group.eq("high").astype(int)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph = CoxPHFitter().fit(df, "T", "E")
    except Exception:  # noqa: BLE001 - no convergence (perfect separation on a tiny cohort): no estimate
        return (np.nan, np.nan, np.nan)
    ci = np.exp(cph.confidence_intervals_.loc["high"].to_numpy())
    hr = float(np.exp(cph.params_["high"]))
    if not (np.isfinite(ci).all() and ci[0] > 0 and 1e-3 < hr < 1e3):  # separated groups: no estimate
        return (np.nan, np.nan, np.nan)
    return hr, float(ci[0]), float(ci[1])


def _by_fold(oof: pd.DataFrame, model: str) -> list[pd.DataFrame]:
    o = oof[oof.model == model]
    return [g.set_index("case_id") for _, g in o.groupby("fold", sort=True)]


REFERENCES = ("ghanet", "abmil")  # every model's paired difference is to these


def reference_pairs(models: list[str]) -> list[tuple[str, str]]:
    """(model, reference) pairs: each model against G-HANet and ABMIL, each pair once."""
    pairs = []
    for ref in (r for r in REFERENCES if r in models):
        pairs += [(m, ref) for m in models if m != ref and (ref, m) not in pairs]
    return pairs


def comparisons(oof: pd.DataFrame, models: list[str]) -> dict[str, dict]:
    """Per model: its C-index interval; per pair (`reference_pairs`): the paired difference on the
    patients every model scored, so that every row's difference is on the same patients."""
    rows = {m: {} for m in models}
    for m in models:
        lo, hi = _interval(bootstrap_c_index(_by_fold(oof, m), ["risk"])[:, 0])
        rows[m].update(c_index_ci_low=lo, c_index_ci_high=hi)
    # the same figure on the patients every model scored (models may leave different patients out)
    common = set.intersection(*(set(oof.loc[oof.model == m, "case_id"]) for m in models)) if models else set()
    for m in models:
        folds = [f.loc[f.index.isin(common)] for f in _by_fold(oof, m)]
        rows[m].update(c_index_common=fold_mean_c_index(folds), n_common=sum(len(f) for f in folds))
    for a, b in reference_pairs(models):
        folds = []
        for fa, fb in zip(_by_fold(oof, a), _by_fold(oof, b)):
            both = fa.index.intersection(fb.index).intersection(list(common))  # one set for every row
            folds.append(fa.loc[both, ["survival_months", "censorship"]].assign(
                a=fa.loc[both, "risk"], b=fb.loc[both, "risk"]))
        reps = bootstrap_c_index(folds, ["a", "b"])
        diff = reps[:, 0] - reps[:, 1]
        point = fold_mean_c_index(folds, "a") - fold_mean_c_index(folds, "b")
        lo, hi = _interval(diff)
        n = sum(len(f) for f in folds)
        # a reference's row also holds its difference to the other reference (G-HANet - ABMIL)
        for x, y, sign in ((a, b, 1), (b, a, -1)) if a in REFERENCES else ((a, b, 1),):
            # + 0.0: a difference of zero is written 0, not -0 (negated)
            rows[x].update({f"diff_vs_{y}": sign * point + 0.0, f"diff_vs_{y}_ci_low": sign * (lo if sign > 0 else hi) + 0.0,
                            f"diff_vs_{y}_ci_high": sign * (hi if sign > 0 else lo) + 0.0,
                            f"diff_vs_{y}_p": paired_p(diff), f"n_paired_vs_{y}": n})
    return rows


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
    order = sorted(dict.fromkeys(folds.model), key=table_order)
    paired = comparisons(oof_df, order)
    for model in order:
        f = folds[folds.model == model]
        o = oof_df[oof_df.model == model]
        present = o.group.nunique()
        p = (multivariate_logrank_test(o.survival_months, o.group, o.censorship.eq(0)).p_value
             if present > 1 else np.nan)
        hr, hr_lo, hr_hi = hazard_ratio(o)
        row = {"model": model, "group": _group(model), "folds": len(f), "c_index_mean": f.c_index.mean(),
               "c_index_sd": f.c_index.std(ddof=1), **paired[model], "td_auc_mean": f.td_auc.mean(),
               "logrank_p": p, "hr_high_vs_low": hr, "hr_ci_low": hr_lo, "hr_ci_high": hr_hi,
               "n_patients": len(o), **{f"n_{g}": int((o.group == g).sum()) for g in GROUPS[scheme]}}
        rr = recon_df[recon_df.model == model]
        for family, g in rr.groupby("family", sort=False):
            row[f"recon_r_{family}"] = g.pearson_r.mean()
        summary.append(row)
    comparison = pd.DataFrame(summary)
    paired_col = lambda c: c.startswith(("diff_vs_", "n_paired_vs_"))  # noqa: E731
    pair_cols = [c for m in comparison.model for c in comparison.columns
                 if paired_col(c) and (c.endswith(f"_vs_{m}") or f"_vs_{m}_" in c)]
    comparison = comparison[[c for c in comparison.columns if not paired_col(c)] + pair_cols]
    return {"comparison": comparison, "folds": folds, "oof": oof_df, "reconstruction": recon_df}


KM_TITLE = "Held-out patients by predicted risk (cut-offs from each fold's training patients)"


def plot_km(oof: pd.DataFrame, scheme: str, comparison: pd.DataFrame, path, title: str = KM_TITLE) -> None:
    """Per model: Kaplan-Meier curves of the patients (`oof`: model, group, survival_months,
    censorship) by risk group, with censor ticks, 95% bands and the numbers at risk under the
    axis; the log-rank p and the hazard ratio from `comparison`."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    models = list(comparison.model)
    fig, axes = plots.panel_grid(len(models), (5.2, 5.4))
    table = comparison.set_index("model")
    for ax, model in zip(axes, models):
        o = oof[oof.model == model]
        fitted = []
        for g in GROUPS[scheme]:
            sub = o[o.group == g]
            if len(sub):
                km = KaplanMeierFitter(label=f"{g} risk").fit(sub.survival_months, sub.censorship.eq(0))
                km.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"ms": 5})
                fitted.append(km)
        if fitted:
            add_at_risk_counts(*fitted, ax=ax, rows_to_show=["At risk"])
        r = table.loc[model]
        hr = (f"HR high vs low {r.hr_high_vs_low:.2f} ({r.hr_ci_low:.2f}-{r.hr_ci_high:.2f})"
              if np.isfinite(r.hr_high_vs_low) else "HR not estimable")
        ax.set(title=f"{label(model)}: log-rank p = {r.logrank_p:.3g}\n{hr}", xlabel="months",
               ylabel="survival probability", ylim=(0, 1.05))
    fig.suptitle(title)
    fig.tight_layout()
    plots.save_figure(fig, path)


def label(model: str) -> str:
    """What a model is called in tables and figures (its registry label: our SNN is not MCAT's)."""
    return registry.label(model)


def _group(model: str) -> str:
    return registry.REGISTRY[model].group if model in registry.REGISTRY else ""


def table_order(model: str) -> tuple:
    """Slide-only, genomics-only, multimodal; within a group, the registry's order."""
    names = list(registry.REGISTRY)
    group = _group(model)
    return (registry.GROUPS.index(group) if group in registry.GROUPS else len(registry.GROUPS),
            names.index(model) if model in names else len(names), model)


def plot_c_index(folds: pd.DataFrame, path) -> None:
    plt = plots.pyplot()
    models = sorted(dict.fromkeys(folds.model), key=table_order)
    fig, ax = plt.subplots(figsize=(1.8 * len(models) + 2, 4))
    for i, model in enumerate(models):
        c = folds.loc[folds.model == model, "c_index"]
        ax.scatter(np.full(len(c), i) + np.linspace(-0.1, 0.1, len(c)), c, color="0.4", zorder=3)
        ax.errorbar(i + 0.25, c.mean(), yerr=c.std(ddof=1) if len(c) > 1 else 0, fmt="D", color="C3",
                    capsize=4, zorder=4)
    ax.axhline(0.5, ls="--", color="0.6")
    spread = folds.groupby("model").c_index.agg(["mean", "std"]).fillna(0)
    # a margin beyond 0 and 1: a fold's C-index of exactly 0 or 1 is a whole dot, not half of one
    lo = min(-0.04, (spread["mean"] - spread["std"]).min() - 0.05)
    hi = max(1.04, (spread["mean"] + spread["std"]).max() + 0.05)
    ax.set(xticks=range(len(models)), xticklabels=[label(m) for m in models], ylabel="C-index (held-out fold)",
           title="C-index per fold (dots) and mean +- sd", ylim=(lo, hi))  # nothing runs off the axis
    fig.tight_layout()
    plots.save_figure(fig, path)


FOREST_TITLE = f"Out-of-fold C-index: bootstrap over patients ({BOOTSTRAP} resamples within folds)"


def plot_forest(comparison: pd.DataFrame, path, title: str = FOREST_TITLE,
                xlabel: str = "C-index (mean over folds), 95% CI") -> None:
    """Each model's C-index (`c_index_mean`) with its bootstrap 95% interval, grouped (slide-only,
    genomics-only, multimodal), and each model's paired difference to G-HANet and to ABMIL."""
    plt = plots.pyplot()
    models = list(comparison.model)
    pairs = [(a, b) for a, b in reference_pairs(models) if f"diff_vs_{b}" in comparison]
    # one panel above the other: model names and pairs get the left margin, the numbers the right
    fig, axes = plt.subplots(2, 1, figsize=(10, 2.2 + 0.45 * (len(models) + max(len(pairs), 1))),
                             gridspec_kw={"height_ratios": [len(models), max(len(pairs), 1)]})
    t = comparison.set_index("model")
    for y, m in enumerate(models):
        r = t.loc[m]
        axes[0].errorbar(r.c_index_mean, y, xerr=[[r.c_index_mean - r.c_index_ci_low], [r.c_index_ci_high - r.c_index_mean]],
                         fmt="s", color="C0", capsize=4)
        axes[0].text(1.02, y, f"{r.c_index_mean:.3f} [{r.c_index_ci_low:.3f}, {r.c_index_ci_high:.3f}]",
                     va="center", fontsize=8, transform=axes[0].get_yaxis_transform())
    axes[0].axvline(0.5, ls="--", color="0.6")
    groups = [_group(m) for m in models]
    for y, g in enumerate(groups):  # a rule above each group, and its name
        if y == 0 or g != groups[y - 1]:
            if y:
                axes[0].axhline(y - 0.5, color="0.75", lw=0.8)
            axes[0].text(0.01, y - 0.42, g, fontsize=7, style="italic", color="0.35", va="top",
                         transform=axes[0].get_yaxis_transform())
    axes[0].set(yticks=range(len(models)), yticklabels=[label(m) for m in models],
                xlabel=xlabel,
                xlim=(0, 1), ylim=(-0.6, len(models) - 0.4))
    axes[0].invert_yaxis()
    for y, (a, b) in enumerate(pairs):
        r = t.loc[a]
        d, lo, hi, p = r[f"diff_vs_{b}"], r[f"diff_vs_{b}_ci_low"], r[f"diff_vs_{b}_ci_high"], r[f"diff_vs_{b}_p"]
        axes[1].errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color="C3", capsize=4)
        axes[1].text(1.02, y, f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}], p {_p_text(p)}", va="center", fontsize=8,
                     transform=axes[1].get_yaxis_transform())
    axes[1].axvline(0, ls="--", color="0.6")
    axes[1].set(yticks=range(len(pairs)), yticklabels=[f"{label(a)} - {label(b)}" for a, b in pairs],
                xlabel="paired difference in C-index, 95% CI", ylim=(-0.6, max(len(pairs), 1) - 0.4))
    axes[1].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    # room for the numbers right of each panel; about an inch between the panels at any height
    fig.subplots_adjust(right=0.72, hspace=min(0.6, 1.1 / max((fig.get_figheight() - 1.5) / 2, 0.1)))
    plots.save_figure(fig, path)


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
    res["comparison"].insert(1, "model_label", res["comparison"].model.map(label))
    out = Path(out_dir)
    tables = dict(res, comparison=res["comparison"].assign(**{  # p-values as they are reported
        c: res["comparison"][c].map(format_p) for c in res["comparison"] if c.startswith("diff_vs_") and c.endswith("_p")}))
    for name in ("comparison", "folds", "oof", "reconstruction"):
        with atomic_path(out / f"{name}.csv") as tmp:
            tables[name].to_csv(tmp, index=False)
    plot_km(res["oof"], params["risk_groups"], res["comparison"], out / "km.png")
    plot_c_index(res["folds"], out / "c_index.png")
    plot_forest(res["comparison"], out / "forest.png")
    for _, row in res["comparison"].iterrows():
        log.info("%s: C-index %.3f +- %.3f over %d folds, log-rank p %.3g", row.model, row.c_index_mean,
                 row.c_index_sd, row.folds, row.logrank_p)
    return res["comparison"]


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--model-dirs", nargs="+", required=True, help="results/models/<model>/fold_<k> folders")
    p.add_argument("--out-dir", required=True)


def _run(args) -> None:
    run(args.model_dirs, commands.sections(args)["evaluate"], out_dir=args.out_dir)


COMMANDS = {"evaluate": commands.Command(_arguments, _run)}
