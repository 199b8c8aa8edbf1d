"""Stage `validate`: external validation on an independent labelled cohort.

The cohort is scored first, one job per slide-only model where torch is (`predict.score_cohort`:
every fold's checkpoint, the same encoder and resolution checks as for new patients, the risk
groups cut at the training cohort's cut-offs, never refitted here, and its patients refused if any
fold was trained or evaluated on them). `run`, in the statistics environment, then evaluates every
model on the patients it scored who have an outcome: Harrell's C-index with a bootstrap 95%
interval (patients resampled), the time-dependent AUC (cumulative/dynamic, scikit-survival) at the
validation cohort's event-time quartiles, Kaplan-Meier curves by risk group with the numbers at
risk, the log-rank p and the hazard ratio high vs low with its interval (lifelines), each model's
paired difference to G-HANet and ABMIL on the patients every model scored (paired bootstrap, as in
`evaluate`), and a calibration: each group's mean predicted survival at a fixed time against the
Kaplan-Meier estimate at that time. Every patient that could not be evaluated is listed with the
reason. Omics are never read: only case_id, slide_id, survival_months and the status column.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import commands, evaluate, plots
from . import models as registry
from .errors import GhanetError
from .io import atomic_path
from .risk import GROUPS

log = logging.getLogger("ghanet.validate")
QUARTILES = (0.25, 0.5, 0.75)


def read_outcomes(path, status_column: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """(outcomes indexed by case_id: survival_months, censorship; [(case_id, reason)] of patients
    whose outcome cannot be used). Reads the id, time and status columns only."""
    path = Path(path)
    if not path.is_file():
        raise GhanetError(f"validation clinical table {path} not found; set validation.clinical")
    wanted = ("case_id", "survival_months", status_column)
    try:
        df = pd.read_csv(path, usecols=lambda c: c in wanted, dtype={"case_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise GhanetError(f"validation clinical table {path}: not a readable CSV ({exc})") from None
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise GhanetError(f"validation clinical table {path}: no column {', '.join(missing)}; it needs case_id, "
                          f"survival_months and {status_column} (validation.status_column)")
    time = pd.to_numeric(df.survival_months, errors="coerce")
    status = pd.to_numeric(df[status_column], errors="coerce")
    df = pd.DataFrame({"case_id": df.case_id.str.strip(), "survival_months": time,
                       "censorship": 1 - status if status_column == "event" else status})
    problems = []
    conflicting = df.drop_duplicates().groupby("case_id").size().pipe(lambda n: n[n > 1].index)
    problems += [(c, "its rows disagree on survival_months or the status") for c in conflicting]
    df = df[~df.case_id.isin(conflicting)].drop_duplicates("case_id").set_index("case_id")
    bad_time = ~(np.isfinite(df.survival_months) & (df.survival_months >= 0))
    bad_status = ~df.censorship.isin([0, 1])
    problems += [(c, f"survival_months is {df.survival_months[c]}, not a number >= 0") for c in df.index[bad_time]]
    problems += [(c, f"{status_column} is not 0 or 1") for c in df.index[bad_status & ~bad_time]]
    df = df[~(bad_time | bad_status)].astype({"censorship": int})
    return df, problems


def _unscored(risks: pd.DataFrame, outcomes: pd.DataFrame, problems: list) -> pd.DataFrame:
    """Every validation patient a model could not be evaluated on, once per reason, naming the
    models (`all` when every model)."""
    models = list(dict.fromkeys(risks.model))
    scored = set(risks.case_id)
    bad = dict(problems)
    rows = [(r.model, r.case_id, r.status, r.reason) for r in risks.itertuples() if r.status != "ok"]
    rows += [(r.model, r.case_id, "no outcome", f"outcome unusable: {bad[r.case_id]}" if r.case_id in bad else
              "not in validation.clinical") for r in risks.itertuples()
             if r.status == "ok" and r.case_id not in outcomes.index]
    rows += [(m, c, "no slide", "in validation.clinical, with no slide in the validation cohort")
             for c in outcomes.index.union(list(bad)) if c not in scored for m in models]
    df = pd.DataFrame(rows, columns=["model", "case_id", "status", "reason"])
    out = df.groupby(["case_id", "status", "reason"], sort=True).model.agg(list).reset_index()
    out["models"] = [("all" if set(ms) == set(models) else ";".join(ms)) for ms in out.model]
    return out[["case_id", "status", "reason", "models"]]


def td_auc_at(patients: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Cumulative/dynamic AUC at each time (NaN where no case/control pair or outside follow-up);
    the censoring distribution is the validation cohort's own (inverse probability weights)."""
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    y = Surv.from_arrays(patients.censorship.eq(0).to_numpy(), patients.survival_months.to_numpy(float))
    out = np.full(len(times), np.nan)
    lo, hi = patients.survival_months.min(), patients.survival_months.max()
    for i, t in enumerate(times):
        if not lo <= t < hi:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[i] = cumulative_dynamic_auc(y, y, patients.risk.to_numpy(float), [t])[0][0]
        except ValueError:  # no case or no control at t
            pass
    return out


def calibration(patients: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """Per model and risk group: the mean predicted survival at the calibration time and the
    Kaplan-Meier estimate at that time with its 95% interval (lifelines)."""
    from lifelines import KaplanMeierFitter

    rows = []
    for model, o in patients.groupby("model", sort=False):
        t = float(o.calibration_months.iloc[0])
        for g in GROUPS[scheme]:
            sub = o[o.group == g]
            if not len(sub):
                continue
            km = KaplanMeierFitter().fit(sub.survival_months, sub.censorship.eq(0))
            ci = km.confidence_interval_survival_function_
            at = ci.index[ci.index <= t].max()
            rows.append({"model": model, "group": g, "n": len(sub), "months": t,
                         "predicted_survival": sub.predicted_survival.mean(),
                         "observed_survival": float(km.predict(t)), "observed_ci_low": float(ci.loc[at].iloc[0]),
                         "observed_ci_high": float(ci.loc[at].iloc[1]),
                         # past the last follow-up the estimate is carried, not observed
                         "followed_past": int((sub.survival_months >= t).sum())})
    return pd.DataFrame(rows)


def evaluate_cohort(risks: pd.DataFrame, outcomes: pd.DataFrame, problems: list,
                    scheme: str) -> dict[str, pd.DataFrame]:
    from lifelines.statistics import multivariate_logrank_test

    scored = risks[risks.status.eq("ok")].merge(outcomes, left_on="case_id", right_index=True)
    patients = scored.rename(columns={"risk_group": "group"}).assign(fold=0)
    models = sorted(dict.fromkeys(patients.model), key=evaluate.table_order)
    events = outcomes.loc[outcomes.censorship.eq(0), "survival_months"]
    times = np.unique(np.quantile(events, QUARTILES)) if len(events) else np.array([])
    paired = evaluate.comparisons(patients, models)
    unscored = _unscored(risks, outcomes, problems)
    rows = []
    for m in models:
        o = patients[patients.model == m]
        if o.censorship.eq(0).sum() == 0:
            raise GhanetError(f"validation cohort: no event among the {len(o)} patients {m} scored; a C-index and "
                              "a log-rank test need events")
        aucs = td_auc_at(o, times)
        p = (multivariate_logrank_test(o.survival_months, o.group, o.censorship.eq(0)).p_value
             if o.group.nunique() > 1 else np.nan)
        hr, hr_lo, hr_hi = evaluate.hazard_ratio(o)
        first = o.iloc[0]
        rows.append({
            "model": m, "model_label": evaluate.label(m), "group": registry.REGISTRY[m].group,
            "n_patients": len(o), "n_events": int(o.censorship.eq(0).sum()),
            "n_unscored": int(sum(m in r.models.split(";") or r.models == "all" for r in unscored.itertuples())),
            "c_index": evaluate.c_index(o.survival_months, o.censorship.eq(0), o.risk),
            "c_index_ci_low": paired[m]["c_index_ci_low"], "c_index_ci_high": paired[m]["c_index_ci_high"],
            "c_index_common": paired[m]["c_index_common"], "n_common": paired[m]["n_common"],
            "td_auc_mean": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan,
            **{f"td_auc_q{int(q * 100)}": (aucs[i] if i < len(aucs) else np.nan) for i, q in enumerate(QUARTILES)},
            **{f"months_q{int(q * 100)}": (times[i] if i < len(times) else np.nan) for i, q in enumerate(QUARTILES)},
            "logrank_p": p, "hr_high_vs_low": hr, "hr_ci_low": hr_lo, "hr_ci_high": hr_hi,
            **{f"n_{g}": int((o.group == g).sum()) for g in GROUPS[scheme]},
            "risk_groups": scheme, **({"cutoff_median": first.cutoff_median} if scheme == "median" else
                                      {"cutoff_tertile_1": first.cutoff_tertile_1,
                                       "cutoff_tertile_2": first.cutoff_tertile_2}),
            "calibration_months": first.calibration_months,
            **{k: v for k, v in paired[m].items() if k.startswith(("diff_vs_", "n_paired_vs_"))},
        })
    table = pd.DataFrame(rows)
    keep = ["model", "case_id", "survival_months", "censorship", "risk", "group", "predicted_survival"]
    return {"validation": table, "patients": patients[keep + [c for c in patients if c.startswith("risk_fold_")]],
            "unscored": unscored, "calibration": calibration(patients, scheme)}


def plot_calibration(cal: pd.DataFrame, table: pd.DataFrame, path) -> None:
    """Per model: each risk group's mean predicted survival at the calibration time against the
    Kaplan-Meier estimate (95% interval); on the diagonal, the model is calibrated."""
    models = list(table.model)
    fig, axes = plots.panel_grid(len(models), (4.2, 4.4))
    for ax, m in zip(axes, models):
        c = cal[cal.model == m]
        ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
        for i, r in enumerate(c.itertuples()):
            ax.errorbar(r.predicted_survival, r.observed_survival, fmt="o", color=f"C{i}", capsize=4,
                        yerr=[[r.observed_survival - r.observed_ci_low], [r.observed_ci_high - r.observed_survival]],
                        label=f"{r.group} risk (n={r.n})")
        months = c.months.iloc[0] if len(c) else float("nan")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=f"predicted survival at {months:.1f} months",
               ylabel="observed (Kaplan-Meier, 95% CI)", title=evaluate.label(m))
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Validation cohort: calibration by risk group (groups by the training cut-offs)")
    fig.tight_layout()
    plots.save_figure(fig, path)


def run(risk_csvs: list, clinical, *, scheme: str, status_column: str, out_dir) -> pd.DataFrame:
    risks = pd.concat([pd.read_csv(p, dtype={"case_id": str}) for p in risk_csvs], ignore_index=True)
    outcomes, problems = read_outcomes(clinical, status_column)
    res = evaluate_cohort(risks, outcomes, problems, scheme)
    out = Path(out_dir)
    table = res["validation"]
    p_values = [c for c in table if c.startswith("diff_vs_") and c.endswith("_p")]
    shown = table.assign(**{c: table[c].map(evaluate.format_p) for c in p_values})  # as they are reported
    for name, df in (("validation", shown), ("patients", res["patients"]), ("unscored", res["unscored"]),
                     ("calibration", res["calibration"])):
        with atomic_path(out / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    km_title = "Validation cohort by predicted risk (cut-offs fixed on the training cohort)"
    evaluate.plot_km(res["patients"], scheme, table, out / "km.png", title=km_title)
    evaluate.plot_forest(table.rename(columns={"c_index": "c_index_mean"}), out / "forest.png",
                         title=f"Validation cohort C-index: bootstrap over patients ({evaluate.BOOTSTRAP} resamples)",
                         xlabel="C-index, 95% CI")
    plot_calibration(res["calibration"], table, out / "calibration.png")
    for r in table.itertuples():
        log.info("%s: C-index %.3f [%.3f, %.3f] on %d patients, log-rank p %.3g", r.model, r.c_index,
                 r.c_index_ci_low, r.c_index_ci_high, r.n_patients, r.logrank_p)
    return table


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--risks", nargs="+", required=True, help="validation-score CSVs, one per model")
    p.add_argument("--clinical", required=True, help="the validation cohort's outcomes")
    p.add_argument("--out-dir", required=True)


def _run(args) -> None:
    cfg = commands.sections(args)
    run(args.risks, args.clinical, scheme=cfg["evaluate"]["risk_groups"], out_dir=args.out_dir,
        status_column=cfg["validation"]["status_column"] or cfg["cohort"]["status_column"])


COMMANDS = {"validate": commands.Command(_arguments, _run)}
