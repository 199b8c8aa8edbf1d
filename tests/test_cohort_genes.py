import functools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import SHARED, bad_input, error_line, names_item_and_fix, run_ghanet
from ghanet_pipeline import cohort, demo, genes, splits
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.errors import GhanetError

BLCA = SHARED / "data" / "tcga_blca"
needs_shared = pytest.mark.skipif(not (BLCA / "tcga_blca_all_clean.csv.gz").exists(),
                                  reason="../shared/data/tcga_blca is absent (a user's clone has no ../shared)")


# ------------------------------------------------------------ real data: TCGA-BLCA


@functools.cache
def _blca() -> pd.DataFrame:
    return pd.read_csv(BLCA / "tcga_blca_all_clean.csv.gz", low_memory=False)


def _independent_counts(fold: int) -> dict:
    """The official-compatible selection recomputed here with pandas + scipy (a Welch test per
    column of the training patients), independently of the stage's own code."""
    df = _blca()
    pts = df.drop_duplicates("case_id").set_index("case_id")
    unc = pts[pts.censorship < 1]
    _, q = pd.qcut(unc.survival_months, q=4, retbins=True, labels=False)
    q[0], q[-1] = pts.survival_months.min() - 1e-6, pts.survival_months.max() + 1e-6
    label = pd.cut(pts.survival_months, bins=q, labels=False, right=False, include_lowest=True)
    split = pd.read_csv(BLCA / f"splits_{fold}.csv")
    train = pts.loc[split.train.dropna()]
    lab = label.loc[train.index]
    hi = ((train.censorship == 0) & (lab < 2)).to_numpy()
    lo = (lab >= 2).to_numpy()
    sig = pd.read_csv(SHARED / "data" / "signatures.csv")
    counts = {}
    for fam in sig.columns:
        genes_ = set(sig[fam].dropna())
        cols = [c for c in df.columns if c.rsplit("_", 1)[0] in genes_ and c.rsplit("_", 1)[-1] in ("rnaseq", "cnv", "mut")]
        x = train[cols].astype(float)
        sd = x.std(ddof=0).replace(0.0, 1.0)
        z = ((x - x.mean()) / sd).to_numpy()
        p = stats.ttest_ind(z[hi], z[lo], equal_var=False, axis=0).pvalue
        counts[fam] = int((np.isfinite(p) & (p < 0.05)).sum())
    return counts


@needs_shared
def test_tcga_blca_selection_matches_an_independent_recomputation(tmp_path):
    # the real stage, through the CLI, with official-compatible settings
    sheet = tmp_path / "slides.csv"
    df = pd.read_csv(BLCA / "tcga_blca_all_clean.csv.gz", usecols=["case_id", "slide_id"])
    df.assign(slide_id=df.slide_id.str.replace(".svs", "", regex=False), path="unused.svs").to_csv(sheet, index=False)
    params = json.dumps({"splits": {"split_dir": str(BLCA), "folds": 5}, "labels": {"fit_on": "cohort"},
                         "genes": {"alpha": 0.05, "correction": "none"}})
    proc = run_ghanet("splits", "--clinical", BLCA / "tcga_blca_all_clean.csv.gz", "--slide-sheet", sheet,
                      "--params", params, "--out-dir", tmp_path / "cohort")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "cohort/splits.json").read_text())
    assert summary["patients"] == 373 and summary["omic_columns"] == 2814 + 248
    for fold in range(5):
        proc = run_ghanet("genes", "--patients", tmp_path / "cohort/patients.csv.gz", "--fold-csv",
                          tmp_path / f"cohort/fold_{fold}.csv", "--fold", fold, "--signatures",
                          SHARED / "data/signatures.csv", "--params", params, "--out-dir", tmp_path / f"g{fold}")
        assert proc.returncode == 0, proc.stderr
        ours = json.loads((tmp_path / f"g{fold}/selection.json").read_text())
        assert ours["fallback_families"] == []
        assert ours["sizes"] == _independent_counts(fold), f"fold {fold}"


# ------------------------------------------------------------ labels and folds


def test_bins_are_quartiles_of_uncensored_left_closed():
    surv = np.array([1, 2, 3, 4, 5, 6, 7, 8, 50.0])
    cens = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1])
    edges = splits.fit_bins(surv, cens, 4, cover=surv)
    assert np.allclose(edges[1:-1], np.quantile(surv[:8], [0.25, 0.5, 0.75]))
    assert edges[0] < 1 and edges[-1] > 50
    assert list(splits.assign_bins(surv, edges)) == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    # left-closed: a time equal to an inner edge goes to the upper bin
    assert splits.assign_bins([edges[1]], edges)[0] == 1
    with pytest.raises(GhanetError, match="uncensored"):
        splits.fit_bins(surv, np.ones(9), 4, cover=surv)


def _cohort(n=60, seed=0):
    clinical, signatures = demo.clinical_table(n, seed)
    return clinical, signatures


def test_folds_are_stratified_disjoint_and_reproducible():
    clinical, _ = _cohort(80)
    pts = cohort.build_cohort(clinical, None, "fail").patients
    folds, how = splits.make_folds(pts, 5, seed=3, n_bins=4)
    assert how == "bin x censorship"
    vals = [set(v) for _, v in folds]
    assert set().union(*vals) == set(pts.index) and sum(map(len, vals)) == len(pts)
    for tr, va in folds:
        assert not set(tr) & set(va)
        # each fold has about a fifth of the events
        assert abs((pts.loc[va].censorship == 0).sum() - (pts.censorship == 0).sum() / 5) <= 2
    again, _ = splits.make_folds(pts, 5, seed=3, n_bins=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other, _ = splits.make_folds(pts, 5, seed=4, n_bins=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


@bad_input("invalid split file")
def test_split_files_are_validated(tmp_path):
    pd.DataFrame({"train": ["a", "b"], "val": ["b", None]}).to_csv(tmp_path / "splits_0.csv")
    with pytest.raises(GhanetError, match="patient b is in both train and val; list each patient in one"):
        splits.read_split_files(tmp_path, 1)
    pd.DataFrame({"train": ["a", "b"], "val": ["c", None]}).to_csv(tmp_path / "splits_0.csv")
    with pytest.raises(GhanetError, match="splits_1.csv not found"):
        splits.read_split_files(tmp_path, 2)


# ------------------------------------------------------------ selection


def test_selection_is_fitted_on_training_patients_only():
    clinical, signatures = _cohort(120)
    pts = cohort.build_cohort(clinical, None, "fail").patients
    fams = cohort.family_columns({c: signatures[c].dropna().tolist() for c in signatures}, list(pts.columns))
    cfg = validate_config({})
    train = pts.index[:90]
    sel, table, scaler = genes.select(pts, train, fams, cfg["genes"], cfg["labels"])
    # the scaler is the training patients' mean and std
    col = table.index[0]
    assert scaler.loc[col, "mean"] == pytest.approx(pts.loc[train, col].mean())
    # changing a held-out patient's data changes nothing
    pts2 = pts.copy()
    pts2.loc[pts.index[100], fams[demo.FAMILIES[1]]] += 100.0
    pts2.loc[pts.index[100], "survival_months"] = 999.0
    sel2, table2, _ = genes.select(pts2, train, fams, cfg["genes"], cfg["labels"])
    assert sel2["families"] == sel["families"] and np.allclose(table2["p"], table["p"])
    # the planted genes of the oncogene family (its first four) separate risk groups better than noise
    rna = [c for c in fams[demo.FAMILIES[1]] if c.endswith("_rnaseq")]
    assert table.loc[rna[:4], "p"].median() < table.loc[rna[4:], "p"].median()
    assert set(rna[:4]) & set(sel["families"][demo.FAMILIES[1]])


def test_correction_and_the_never_empty_rule():
    clinical, signatures = _cohort(120)
    pts = cohort.build_cohort(clinical, None, "fail").patients
    fams = cohort.family_columns({c: signatures[c].dropna().tolist() for c in signatures}, list(pts.columns))
    plain = genes.select(pts, pts.index, fams, validate_config({})["genes"], validate_config({})["labels"])[1]
    bh = genes.select(pts, pts.index, fams, validate_config({"genes": {"correction": "bh"}})["genes"],
                      validate_config({})["labels"])[1]
    assert (bh["p_adj"] >= bh["p"]).all() and np.allclose(plain["p_adj"], plain["p"])
    assert (bh["p_adj"] < 0.05).sum() < (plain["p"] < 0.05).sum()
    strict = validate_config({"genes": {"alpha": 1e-12, "min_features": 3}})
    sel, table, _ = genes.select(pts, pts.index, fams, strict["genes"], strict["labels"])
    for fam in fams:
        assert len(sel["families"][fam]) >= 1
        if fam in sel["fallback_families"]:
            kept = sel["families"][fam]
            assert len(kept) == 3
            assert table.loc[kept, "p"].max() <= table.loc[fams[fam], "p"].sort_values().iloc[2]


def test_selection_of_one_fold_is_fast_and_vectorised():
    """3,000 features in one call (timed in benchmarks; here: no per-feature Python loop)."""
    rng = np.random.default_rng(0)
    n, d = 300, 3000
    pts = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"G{i}_rnaseq" for i in range(d)],
                       index=[f"p{i}" for i in range(n)])
    pts.insert(0, "censorship", rng.integers(0, 2, n))
    pts.insert(0, "survival_months", rng.exponential(30, n))
    fams = {f"F{k}": [f"G{i}_rnaseq" for i in range(k * 500, (k + 1) * 500)] for k in range(6)}
    cfg = validate_config({})
    sel, table, _ = genes.select(pts, pts.index, fams, cfg["genes"], cfg["labels"])
    # null data: about alpha of the features pass
    assert 0.02 < table["selected"].mean() < 0.09


# ------------------------------------------------------------ validation cases


def _write(tmp_path, clinical, slides):
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    pd.DataFrame({"slide_id": list(slides), "case_id": list(slides.values()),
                  "path": "x.svs"}).to_csv(tmp_path / "slides.csv", index=False)


def _splits(tmp_path, on_problem="fail"):
    params = json.dumps({"cohort": {"on_problem": on_problem}, "splits": {"folds": 2}})
    return run_ghanet("splits", "--clinical", tmp_path / "clinical.csv", "--slide-sheet",
                      tmp_path / "slides.csv", "--params", params, "--out-dir", tmp_path / "out")


CASES = {
    "conflicting outcomes of one patient": (lambda c: c.assign(survival_months=np.where(c.slide_id == c.slide_id.iloc[1], 1.0, c.survival_months)), "disagree on survival_months"),
    "NaN survival time": (lambda c: c.assign(survival_months=np.where(c.case_id == "DEMO-003", np.nan, c.survival_months)), "survival_months is nan"),
    "negative survival time": (lambda c: c.assign(survival_months=np.where(c.case_id == "DEMO-003", -2.0, c.survival_months)), "survival_months is -2.0"),
    "censorship not 0/1": (lambda c: c.assign(censorship=np.where(c.case_id == "DEMO-003", 2, c.censorship)), "censorship is 2"),
    "missing (NaN) genomic value": (lambda c: c.assign(**{c.columns[12]: np.where(c.case_id == "DEMO-003", np.nan, c[c.columns[12]])}), "omic value(s) missing"),
}


@bad_input(*CASES)
@pytest.mark.parametrize("case", list(CASES))
def test_patient_problems_fail_or_are_excluded(tmp_path, case):
    clinical, _ = _cohort(12)
    if case == "conflicting outcomes of one patient":  # needs a patient with two slides
        clinical = pd.concat([clinical, clinical[clinical.case_id == "DEMO-003"].assign(slide_id="EXTRA")])
        clinical.loc[clinical.slide_id == "EXTRA", "survival_months"] = 0.5
        modify, words = (lambda c: c), "disagree on survival_months"
    else:
        modify, words = CASES[case]
    clinical = modify(clinical)
    slides = dict(zip(clinical.slide_id, clinical.case_id))
    _write(tmp_path, clinical, slides)
    line = error_line(_splits(tmp_path))
    assert words in line
    names_item_and_fix(line, "patient DEMO-003", "set cohort.on_problem: exclude")
    proc = _splits(tmp_path, "exclude")
    assert proc.returncode == 0, proc.stderr
    excl = pd.read_csv(tmp_path / "out/exclusions.csv")
    assert list(excl["item"]) == ["DEMO-003"]
    pts = splits.read_patients(tmp_path / "out/patients.csv.gz")
    assert "DEMO-003" not in pts.index and len(pts) == 11


@bad_input("patient without slides", "slide without patient")
def test_patients_without_slides_and_slides_without_patients(tmp_path):
    clinical, _ = _cohort(12)
    every = dict(zip(clinical.slide_id, clinical.case_id))
    _write(tmp_path, clinical, {s: c for s, c in every.items() if c != "DEMO-005"})
    line = error_line(_splits(tmp_path))
    names_item_and_fix(line, "patient DEMO-005 has no slide", "add its slides")
    _write(tmp_path, clinical, {**every, "ORPHAN-S1": "NOBODY"})
    names_item_and_fix(error_line(_splits(tmp_path)), "slide ORPHAN-S1", "on_problem: exclude")
    slides = {s: c for s, c in every.items() if c != "DEMO-005"}
    slides["ORPHAN-S1"] = "NOBODY"
    _write(tmp_path, clinical, slides)
    assert _splits(tmp_path, "exclude").returncode == 0
    excl = pd.read_csv(tmp_path / "out/exclusions.csv").set_index("item")
    assert excl.loc["DEMO-005", "kind"] == "patient without slides"
    assert excl.loc["ORPHAN-S1", "kind"] == "slide without patient"


@bad_input("non-numeric genomic value")
def test_non_numeric_omic_column_is_an_error(tmp_path):
    clinical, _ = _cohort(12)
    col = [c for c in clinical.columns if c.endswith("_rnaseq")][3]
    clinical[col] = clinical[col].astype(object)
    clinical.loc[4, col] = "high"
    _write(tmp_path, clinical, dict(zip(clinical.slide_id, clinical.case_id)))
    line = error_line(_splits(tmp_path, "exclude"))
    assert col in line and "'high'" in line
    names_item_and_fix(line, clinical.case_id[4], "omic columns must be numbers (fix or blank that cell)")
