"""Training and evaluation on a small hand-built fold: real feature files, the real loop, real metrics."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import bad_input, error_line, ghanet_in_process, names_item_and_fix
from ghanet_pipeline import evaluate, formats, splits, train
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.risk import cutoffs_from, risk_group

FAMILIES = {"Oncogenes": ["O1_rnaseq", "O2_cnv"], "Tumor Suppressor Genes": ["T1_rnaseq"]}
DIM = 16


TOY_ATTRS = {"encoder": "toy", "dim": DIM, "weights_sha256": "x", "precision": "fp32", "patch_size": 256,
             "target_mpp": 0.5, "level0_mpp": 0.25}


def make_fold(root, n=14, seed=0, fold=0, dim=DIM, attrs=None):
    """n patients (some with two slides): features carry a risk signal, so do the omics."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    rows = []
    for i in range(n):
        case = f"P{i:02d}"
        slides = [f"{case}-S1"] + ([f"{case}-S2"] if i % 4 == 0 else [])
        for sid in slides:
            m = int(rng.integers(3, 25))
            feats = rng.normal(size=(m, dim)).astype(np.float32)
            feats[:, 0] += risk[i]
            formats.write_features(root / "features" / f"{sid}.h5", feats, np.zeros((m, 2), int), {},
                                   attrs or TOY_ATTRS)
        rows.append({"case_id": case, "survival_months": float(np.exp(2.5 - risk[i]) + rng.uniform(0, 2)),
                     "censorship": int(rng.random() < 0.3), "slide_ids": ";".join(slides),
                     "O1_rnaseq": risk[i] + rng.normal(0, .3), "O2_cnv": rng.normal(),
                     "T1_rnaseq": -risk[i] + rng.normal(0, .3)})
    patients = pd.DataFrame(rows).set_index("case_id")
    patients.to_csv(root / "patients.csv.gz", compression="gzip")
    ids = list(patients.index)
    train_ids, val_ids = ids[: n - 4], ids[n - 4:]
    if fold:  # another fold: rotate who is held out
        ids = ids[4 * fold:] + ids[:4 * fold]
        train_ids, val_ids = ids[: n - 4], ids[n - 4:]
    splits.write_fold(root / f"fold_{fold}.csv", train_ids, val_ids)
    tr = patients.loc[train_ids]
    edges = splits.fit_bins(tr.survival_months, tr.censorship, 2, patients.survival_months)
    (root / "selection.json").write_text(json.dumps({"fold": fold, "families": FAMILIES, "bin_edges": edges.tolist()}))
    cols = ["O1_rnaseq", "O2_cnv", "T1_rnaseq"]
    pd.DataFrame({"feature": cols, "mean": tr[cols].mean().values, "std": tr[cols].std(ddof=0).values}
                 ).to_csv(root / "scaler.csv", index=False)
    return patients


def sections(on_problem="fail", **train_overrides):
    cfg = validate_config({"train": {"epochs": 3, "grad_accum": 4, **train_overrides},
                           "model": {"hidden_dim": 32, "heads": 2, "head_dim": 8},
                           "cohort": {"on_problem": on_problem}, "splits": {"folds": 2}})
    return {k: cfg[k] for k in ("train", "model", "cohort", "labels", "tile", "extract", "splits")}


def train_once(root, model, out, on_problem="fail", fold=0, **overrides):
    return train.run(model, fold, patients_csv=root / "patients.csv.gz", fold_csv=root / f"fold_{fold}.csv",
                     selection_json=root / "selection.json", scaler_csv=root / "scaler.csv",
                     features_dir=root / "features", sections=sections(on_problem, **overrides), out_dir=out,
                     device="cpu", threads=1)


@pytest.mark.parametrize("model", ["ghanet", "abmil", "snn"])
def test_training_is_deterministic_and_writes_a_self_contained_checkpoint(tmp_path, model):
    make_fold(tmp_path)
    train_once(tmp_path, model, tmp_path / "a")
    train_once(tmp_path, model, tmp_path / "b")
    a, b = pd.read_csv(tmp_path / "a/risks.csv"), pd.read_csv(tmp_path / "b/risks.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # identical risks for one seed on CPU
    assert set(a.split) == {"train", "val"} and (a.split == "val").sum() == 4
    ckpt = train.load_checkpoint(tmp_path / "a/model.pt")
    for key in ("config", "families", "scaler", "bin_edges", "seed", "version", "risk_cutoffs", "train_ids"):
        assert key in ckpt
    assert ckpt["families"] == FAMILIES and ckpt["seed"] == 1
    assert (ckpt["encoder"] or {}).get("encoder") == ("toy" if model != "snn" else None)
    hist = pd.read_csv(tmp_path / "a/train_log.csv")
    assert list(hist.epoch) == [1, 2, 3] and np.isfinite(hist.loss).all()
    assert (tmp_path / "a/loss.png").read_bytes()[:4] == b"\x89PNG"
    # the checkpoint alone reproduces the stage's risk for a held-out patient
    fold = train.load_fold(tmp_path / "patients.csv.gz", tmp_path / "fold_0.csv", tmp_path / "selection.json",
                           tmp_path / "scaler.csv", 0)
    case = fold.val_ids[0]
    x = (torch.from_numpy(train.read_bag(tmp_path / "features", fold.table.at[case, "slide_ids"].split(";"), case)[0])
         if model != "snn" else torch.from_numpy(fold.omic_vector(case)))
    with torch.no_grad():
        assert ckpt["module"](x)["risk"].item() == pytest.approx(a.set_index("case_id").at[case, "risk"], abs=1e-6)


def test_bags_larger_than_the_cache_are_read_from_disk_with_the_same_result(tmp_path, monkeypatch):
    """A fold whose bags exceed train.CACHE_BYTES (a cohort of thousands of slides) is trained on
    bags read from disk at each step, never all held, with the risks of the cached run."""
    make_fold(tmp_path)
    fold = train.load_fold(tmp_path / "patients.csv.gz", tmp_path / "fold_0.csv", tmp_path / "selection.json",
                           tmp_path / "scaler.csv", 0)
    assert len(train.Inputs("ghanet", fold, tmp_path / "features", "cpu", "fail").cache) == 14
    train_once(tmp_path, "ghanet", tmp_path / "cached")
    monkeypatch.setattr(train, "CACHE_BYTES", 1000)  # smaller than the fold's bags
    assert train.Inputs("ghanet", fold, tmp_path / "features", "cpu", "fail").cache == {}
    train_once(tmp_path, "ghanet", tmp_path / "streamed")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cached/risks.csv"),
                                  pd.read_csv(tmp_path / "streamed/risks.csv"), check_exact=True)


def test_another_seed_gives_another_model(tmp_path):
    make_fold(tmp_path)
    train_once(tmp_path, "abmil", tmp_path / "a", seed=1)
    train_once(tmp_path, "abmil", tmp_path / "b", seed=2)
    assert not np.allclose(pd.read_csv(tmp_path / "a/risks.csv").risk, pd.read_csv(tmp_path / "b/risks.csv").risk)


def test_held_out_outcomes_never_touch_training(tmp_path):
    """Early stopping looks at an inner split of the training patients only: rewriting the scored
    fold's survival changes neither the chosen epoch nor any risk."""
    patients = make_fold(tmp_path)
    train_once(tmp_path, "ghanet", tmp_path / "a", epochs=6, inner_val_fraction=0.3, patience=2)
    val = pd.read_csv(tmp_path / "fold_0.csv").val.dropna()
    patients.loc[val, "survival_months"] = patients.loc[val, "survival_months"].to_numpy()[::-1] * 3
    patients.loc[val, "censorship"] = 1 - patients.loc[val, "censorship"]
    patients.to_csv(tmp_path / "patients.csv.gz", compression="gzip")
    train_once(tmp_path, "ghanet", tmp_path / "b", epochs=6, inner_val_fraction=0.3, patience=2)
    ha, hb = pd.read_csv(tmp_path / "a/train_log.csv"), pd.read_csv(tmp_path / "b/train_log.csv")
    assert "inner_val_loss" in ha and ha.chosen.sum() == 1
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"))
    ra, rb = pd.read_csv(tmp_path / "a/risks.csv"), pd.read_csv(tmp_path / "b/risks.csv")
    assert ra.risk.tolist() == rb.risk.tolist()
    assert len(train.load_checkpoint(tmp_path / "a/model.pt")["train_ids"]) < 10  # the inner split was held back


def test_balanced_sampling_evens_out_the_classes():
    labels = np.array([0] * 90 + [1] * 10)
    gen = torch.Generator().manual_seed(0)
    draws = np.concatenate([train.balanced_order(labels, 100, gen, True) for _ in range(50)])
    share = (labels[draws] == 1).mean()
    assert 0.45 < share < 0.55
    assert sorted(train.balanced_order(labels, 100, gen, False)) == list(range(100))


def test_c_index_agrees_with_lifelines():
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        time, event, risk = rng.exponential(10, n).round(1), rng.random(n) < 0.6, rng.normal(size=n)
        if not event.any():
            continue
        ours = evaluate.c_index(time, event, risk)
        # lifelines scores agreement of higher prediction with longer survival: flip the sign
        assert ours == pytest.approx(concordance_index(time, -risk, event), abs=1e-9)
    assert np.isnan(evaluate.c_index([1, 2], [False, False], [0.1, 0.2]))


def test_c_index_is_scikit_survivals_on_ties_and_small_sets():
    """The pairwise count equals scikit-survival's loop, tied times and tied risks included."""
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_censored

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 60))
        t = rng.integers(1, 10, n).astype(float)  # many tied times
        e = rng.random(n) < 0.6
        r = rng.integers(0, 5, n) / 3.0 if trial % 2 else rng.normal(size=n)  # tied risks half the time
        try:
            want = concordance_index_censored(e, t, r)[0] if e.any() else np.nan
        except NoComparablePairException:
            want = np.nan
        got = evaluate.c_index(t, e, r)
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_risk_groups_use_the_training_cutoffs():
    cut = cutoffs_from(pd.Series([1.0, 2, 3, 4, 5, 6]))
    assert cut["median"] == 3.5
    assert list(risk_group([0, 3.5, 9], cut, "median")) == ["low", "high", "high"]
    assert list(risk_group([0, 3.4, 9], cut, "tertiles")) == ["low", "intermediate", "high"]


def test_evaluation_table_and_plots(tmp_path):
    make_fold(tmp_path)
    for model in ("ghanet", "snn"):
        train_once(tmp_path, model, tmp_path / f"models/{model}/fold_0")
    table = evaluate.run([tmp_path / "models/ghanet/fold_0", tmp_path / "models/snn/fold_0"],
                         {"risk_groups": "median"}, out_dir=tmp_path / "eval")
    assert list(table.model) == ["ghanet", "snn"]
    folds = pd.read_csv(tmp_path / "eval/folds.csv")
    risks = pd.read_csv(tmp_path / "models/snn/fold_0/risks.csv")
    val = risks[risks.split == "val"]
    assert folds.set_index("model").at["snn", "c_index"] == pytest.approx(
        evaluate.c_index(val.survival_months, val.censorship == 0, val.risk))
    recon = pd.read_csv(tmp_path / "eval/reconstruction.csv")
    assert set(recon.family) == set(FAMILIES) and set(recon.model) == {"ghanet"}
    assert "recon_r_Oncogenes" in table.columns
    for png in ("km.png", "c_index.png", "forest.png"):
        assert (tmp_path / "eval" / png).read_bytes()[:4] == b"\x89PNG"
    for col in ("c_index_ci_low", "c_index_ci_high", "diff_vs_ghanet", "diff_vs_ghanet_p", "hr_high_vs_low"):
        assert col in table.columns
    # each model is compared with G-HANet (and ABMIL), not each with each
    assert "diff_vs_snn" not in table.columns and np.isnan(table.set_index("model").at["ghanet", "diff_vs_ghanet"])
    assert list(table.group) == ["slide-only", "genomics-only"]


@bad_input("patient without patches")
def test_a_patient_without_patches_is_named(tmp_path):
    patients = make_fold(tmp_path)
    case = patients.index[2]
    sid = patients.at[case, "slide_ids"]
    formats.write_features(tmp_path / "features" / f"{sid}.h5", np.empty((0, DIM), np.float32),
                           np.empty((0, 2), int), {}, {"encoder": "toy"})
    proc = ghanet_in_process("train", "--model", "abmil", "--fold", 0, "--patients", tmp_path / "patients.csv.gz",
                      "--fold-csv", tmp_path / "fold_0.csv", "--selection", tmp_path / "selection.json",
                      "--scaler", tmp_path / "scaler.csv", "--features-dir", tmp_path / "features",
                      "--out-dir", tmp_path / "out", "--params", json.dumps(sections()))
    line = error_line(proc)
    names_item_and_fix(line, f"patient {case} has no patch", "on_problem: exclude")
    assert not (tmp_path / "out/model.pt").exists()
    # excluded on request: no score for that patient, and the checkpoint records why
    train_once(tmp_path, "abmil", tmp_path / "out", on_problem="exclude")
    assert case not in pd.read_csv(tmp_path / "out/risks.csv").case_id.tolist()
    assert train.load_checkpoint(tmp_path / "out/model.pt")["excluded"][0][0] == case


@bad_input("feature file of the wrong dimension")
def test_features_of_another_dimension_are_refused(tmp_path):
    patients = make_fold(tmp_path)
    case = next(c for c in patients.index if ";" in patients.at[c, "slide_ids"])
    sid = patients.at[case, "slide_ids"].split(";")[1]
    formats.write_features(tmp_path / "features" / f"{sid}.h5", np.zeros((4, DIM + 1), np.float32),
                           np.zeros((4, 2), int), {}, {})
    with pytest.raises(Exception, match=f"patient {case}: slide {sid} has {DIM + 1}-d features.*; extract every slide with the same encoder"):
        train_once(tmp_path, "abmil", tmp_path / "out")


def _oof(n_per_fold=(20, 18), seed=0):
    """Out-of-fold risks of two models on known data: `abmil` follows the hazard, `ghanet` (here) does not."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold, n in enumerate(n_per_fold):
        hazard = rng.normal(size=n)
        time = rng.exponential(np.exp(-hazard) * 20)
        cens = (rng.random(n) < 0.3).astype(int)
        for model, risk in (("abmil", hazard + rng.normal(0, 0.3, n)), ("ghanet", rng.normal(size=n))):
            rows += [{"model": model, "fold": fold, "case_id": f"F{fold}P{i}", "survival_months": t,
                      "censorship": c, "risk": r} for i, (t, c, r) in enumerate(zip(time, cens, risk))]
    return pd.DataFrame(rows)


def test_bootstrap_intervals_and_paired_differences_match_a_direct_computation():
    from lifelines.utils import concordance_index

    oof = _oof()
    got = evaluate.comparisons(oof, ["abmil", "ghanet"])
    # the same draws, computed directly: per replicate, fold by fold, n indices with replacement
    rng = np.random.default_rng(evaluate.BOOTSTRAP_SEED)
    folds = {m: [g for _, g in oof[oof.model == m].groupby("fold")] for m in ("abmil", "ghanet")}
    reps = []
    for _ in range(evaluate.BOOTSTRAP):
        idx = [rng.integers(0, len(f), len(f)) for f in folds["abmil"]]
        rep = {}
        for m in ("abmil", "ghanet"):
            cs = [concordance_index(f.survival_months.to_numpy()[i], -f.risk.to_numpy()[i], (f.censorship.to_numpy()[i] == 0))
                  for f, i in zip(folds[m], idx)]
            rep[m] = np.mean(cs)
        reps.append(rep)
    good = np.array([r["abmil"] for r in reps])
    diff = good - np.array([r["ghanet"] for r in reps])
    assert got["abmil"]["c_index_ci_low"] == pytest.approx(np.percentile(good, 2.5), abs=1e-9)
    assert got["abmil"]["c_index_ci_high"] == pytest.approx(np.percentile(good, 97.5), abs=1e-9)
    assert got["abmil"]["diff_vs_ghanet_ci_low"] == pytest.approx(np.percentile(diff, 2.5), abs=1e-9)
    assert got["ghanet"]["diff_vs_abmil_ci_high"] == pytest.approx(-np.percentile(diff, 2.5), abs=1e-9)
    p = min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean()))
    assert got["abmil"]["diff_vs_ghanet_p"] == got["ghanet"]["diff_vs_abmil_p"] == pytest.approx(p)
    # the model that follows the hazard beats noise, clearly
    assert got["abmil"]["diff_vs_ghanet"] > 0 and got["abmil"]["diff_vs_ghanet_ci_low"] > 0 and p < 0.05
    assert got["abmil"]["n_paired_vs_ghanet"] == 38
    # every draw on one side: 1,000 resamples cannot tell p = 0 from p = 0.0004, so it reads < 1/B
    one_side = evaluate.paired_p(np.linspace(0.01, 0.2, evaluate.BOOTSTRAP))
    assert one_side == 0 and evaluate.format_p(one_side) == "< 0.001" and evaluate._p_text(one_side) == "< 0.001"
    assert evaluate.format_p(p) == f"{p:.3g}" and evaluate._p_text(0.0123) == "= 0.0123"
    assert evaluate.format_p(0.001) == "0.001" and evaluate.format_p(float("nan")) == ""


def test_pairs_are_compared_on_the_patients_every_model_scored_and_the_hazard_ratio_is_cox():
    from lifelines import CoxPHFitter

    oof = _oof()
    dropped = oof[~((oof.model == "ghanet") & oof.case_id.isin(["F0P1", "F1P2", "F1P3"]))]
    got = evaluate.comparisons(dropped, ["abmil", "ghanet"])
    assert got["abmil"]["n_paired_vs_ghanet"] == got["abmil"]["n_common"] == got["ghanet"]["n_common"] == 35
    kept = [g[~g.case_id.isin(["F0P1", "F1P2", "F1P3"])] for _, g in oof[oof.model == "abmil"].groupby("fold")]
    assert got["abmil"]["c_index_common"] == pytest.approx(evaluate.fold_mean_c_index(kept))
    # a third model that left out another patient: every difference is on the patients all three scored
    third = oof[(oof.model == "abmil") & (oof.case_id != "F0P4")].assign(model="deepsets")
    got = evaluate.comparisons(pd.concat([dropped, third]), ["abmil", "ghanet", "deepsets"])
    assert got["abmil"]["n_paired_vs_ghanet"] == got["deepsets"]["n_paired_vs_ghanet"] == 34
    assert got["deepsets"]["n_paired_vs_abmil"] == 34 and got["deepsets"]["diff_vs_abmil"] == 0
    assert "diff_vs_deepsets" not in got["abmil"] and "diff_vs_deepsets" not in got["ghanet"]
    o = oof[oof.model == "abmil"].assign(group=lambda d: np.where(d.risk > d.risk.median(), "high", "low"))
    hr, lo, hi = evaluate.hazard_ratio(o)
    cph = CoxPHFitter().fit(pd.DataFrame({"T": o.survival_months, "E": 1 - o.censorship,
                                          "high": (o.group == "high").astype(int)}), "T", "E")
    assert hr == pytest.approx(float(np.exp(cph.params_["high"]))) and lo < hr < hi and hr > 1
