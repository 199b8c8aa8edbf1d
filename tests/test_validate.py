"""External validation: the tiny demo trains on its cohort and validates on a disjoint labelled one
(from that cohort's slides, in the tiny run); the same cohort given as CLAM's feature files validates
to the same figures; the risk groups are cut where the training cohort put them; a patient of the
training cohort, and features of another encoder, are refused."""

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY_DEMO, bad_input, error_line, ghanet_in_process, job_counts, names_item_and_fix, snakemake, \
    write_config
from ghanet_pipeline import features, predict, validate
from ghanet_pipeline.errors import GhanetError
from other_tools import clam_features
from test_config_keys import covers

SLIDE_ONLY = ["ghanet", "abmil"]  # the tiny demo's models that score slides alone (its SNN reads omics)
TABLE_COLUMNS = ["n_patients", "n_events", "c_index", "c_index_ci_low", "c_index_ci_high", "td_auc_mean",
                 "td_auc_q25", "td_auc_q50", "td_auc_q75", "months_q25", "logrank_p", "hr_high_vs_low", "hr_ci_low",
                 "hr_ci_high", "n_low", "n_high", "cutoff_median", "calibration_months", "diff_vs_ghanet",
                 "diff_vs_ghanet_ci_low", "diff_vs_ghanet_p", "diff_vs_abmil"]


def _features_dir(run):
    return run / "results/features/efficientnet_lite0"


def _val_slides(run) -> pd.DataFrame:
    return pd.read_csv(run / "results/demo/validation.csv")[["slide_id", "case_id", "path"]]


def test_the_demo_validates_every_slide_only_model_on_its_held_out_cohort(tiny_run):
    out = tiny_run / "results/validation"
    table = pd.read_csv(out / "validation.csv")
    assert list(table.model) == SLIDE_ONLY
    assert [c for c in TABLE_COLUMNS if c not in table] == []
    for name in ("km.png", "forest.png", "calibration.png"):
        assert min(Image.open(out / name).size) > 300, name
    outcomes = pd.read_csv(tiny_run / "results/demo/validation_clinical.csv")
    trained = set(pd.read_csv(tiny_run / "results/demo/clinical.csv").case_id)
    patients = pd.read_csv(out / "patients.csv")
    assert not trained & set(outcomes.case_id)  # a disjoint cohort
    assert pd.read_csv(out / "unscored.csv").empty and set(patients.case_id) == set(outcomes.case_id)
    from sksurv.metrics import concordance_index_censored

    for model, o in patients.groupby("model"):
        row = table.set_index("model").loc[model]
        assert row.n_patients == len(outcomes) and row.n_events == int((outcomes.censorship == 0).sum())
        assert row.c_index == pytest.approx(concordance_index_censored(o.censorship.eq(0).to_numpy(), o.survival_months,
                                                                       o.risk)[0])
        assert row.c_index_ci_low <= row.c_index <= row.c_index_ci_high
        ckpts = predict.load_models(tiny_run / f"results/models/{model}")
        assert o.risk.to_numpy() == pytest.approx(o[["risk_fold_0", "risk_fold_1"]].mean(axis=1).to_numpy())
        # the cut-off is the training cohort's: the mean of the folds' medians of their training risks
        cut = np.mean([pd.read_csv(tiny_run / f"results/models/{model}/fold_{k}/risks.csv").query("split == 'train'")
                       .risk.median() for k in (0, 1)])
        assert row.cutoff_median == pytest.approx(cut) == pytest.approx(predict.cutoffs(ckpts)["median"])
        assert list(o.group) == ["high" if r >= cut else "low" for r in o.risk]
        assert cut != pytest.approx(o.risk.median())  # not the validation cohort's own
        assert row.calibration_months == pytest.approx(predict.middle_bin_edge(ckpts))
    cal = pd.read_csv(out / "calibration.csv")
    assert set(cal.model) == set(SLIDE_ONLY) and cal.predicted_survival.between(0, 1).all()
    assert (cal.observed_ci_low <= cal.observed_survival).all() and (cal.observed_survival <= cal.observed_ci_high).all()


@covers("validation.calibration_months")
def test_a_patients_group_does_not_depend_on_the_rest_of_the_cohort(tiny_run):
    """Each patient scored alone gets the risk and the group it got with the cohort: nothing is
    fitted on the cohort scored."""
    slides = _val_slides(tiny_run)
    for model in SLIDE_ONLY:
        whole = pd.read_csv(tiny_run / f"results/validation/risks/{model}.csv").set_index("case_id")
        for case, one in slides.groupby("case_id"):
            alone = predict.score_cohort(tiny_run / f"results/models/{model}", one, _features_dir(tiny_run)).iloc[0]
            assert alone.risk == pytest.approx(whole.at[case, "risk"]) and alone.risk_group == whole.at[case, "risk_group"]
            assert alone.predicted_survival == pytest.approx(whole.at[case, "predicted_survival"])
    # survival predicted at another time: higher earlier (the first bin's end is past 1 month)
    early = predict.score_cohort(tiny_run / "results/models/ghanet", slides, _features_dir(tiny_run), calibration_months=1.0)
    assert set(early.calibration_months) == {1.0}
    default = pd.read_csv(tiny_run / "results/validation/risks/ghanet.csv")
    assert (early.predicted_survival.to_numpy() > default.predicted_survival.to_numpy()).all()


@pytest.mark.slow
@covers("validation.features", "validation.clinical", "validation.status_column")
def test_a_cohort_given_as_clam_features_validates_to_the_same_figures(tiny_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    # the validation slides' features as CLAM's extract_features_fp writes them (h5_files/, no attributes)
    clam = tmp_path / "clam"
    for sid in _val_slides(tiny_run).slide_id:
        feats, coords, _ = features.read_features(_features_dir(tiny_run) / f"{sid}.h5")
        clam_features(clam / "h5_files" / f"{sid}.h5", feats, coords)
    feats, coords, _ = features.read_features(_features_dir(tiny_run) / "VAL-000-S1.h5")
    clam_features(clam / "h5_files" / "VAL-901-S1.h5", feats, coords)
    # MCAT's layout: a row per slide named as the scanner file, an omic column (never read), and
    # `event` (1 = event) as the status; a patient without a feature file, one without a usable outcome
    outcomes = pd.read_csv(tiny_run / "results/demo/validation_clinical.csv")
    table = pd.concat([outcomes, pd.DataFrame({"case_id": ["VAL-900", "VAL-901"], "slide_id": ["VAL-900-S1", "VAL-901-S1"],
                                               "survival_months": [12.0, np.nan], "censorship": [0, 1]})])
    table = table.assign(slide_id=table.slide_id + ".svs", event=1 - table.censorship, TP53_rnaseq="not a number")
    table.drop(columns="censorship").to_csv(tmp_path / "outcomes.csv", index=False)
    cfg = dict(TINY_DEMO, validation={"features": str(clam), "clinical": str(tmp_path / "outcomes.csv"),
                                      "status_column": "event"})
    config = write_config(tmp_path / "config.yaml", cfg)
    jobs = job_counts(snakemake(work, "-n", configfile=config).stdout)
    assert jobs["validation_score"] == 2 and jobs["validate"] == 1
    assert not {"segment", "tile", "extract", "train", "demo_validation"} & set(jobs), jobs
    proc = snakemake(work, configfile=config)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out, ref = work / "results/validation", tiny_run / "results/validation"
    mine = pd.read_csv(out / "patients.csv").set_index(["model", "case_id"])
    theirs = pd.read_csv(ref / "patients.csv").set_index(["model", "case_id"])
    assert mine.loc[theirs.index, "risk"].to_numpy() == pytest.approx(theirs.risk.to_numpy(), abs=1e-6)
    assert (mine.loc[theirs.index, "group"] == theirs.group).all()
    new, old = (pd.read_csv(d / "validation.csv").set_index("model") for d in (out, ref))
    assert new.c_index.to_numpy() == pytest.approx(old.c_index.to_numpy())
    unscored = pd.read_csv(out / "unscored.csv").set_index("case_id")
    assert unscored.at["VAL-900", "status"] == "failed" and "VAL-900-S1" in unscored.at["VAL-900", "reason"]
    assert unscored.at["VAL-901", "status"] == "no outcome" and set(unscored.models) == {"all"}
    failures = pd.read_csv(work / "results/report/failures.csv")
    assert {"VAL-900", "VAL-901"} <= set(failures.loc[failures.stage == "validate", "item"])


@bad_input("validation patient in the training cohort")
@covers("validation.slide_sheet")
def test_a_validation_patient_of_the_training_cohort_is_refused(tiny_run, tmp_path):
    trained = pd.read_csv(tiny_run / "results/demo/slides.csv").iloc[0]
    sheet = tmp_path / "validation.csv"
    pd.DataFrame({"slide_id": ["X-1", trained.slide_id], "case_id": ["X", trained.case_id],
                  "path": ["x.tiff", str(tiny_run / "results/demo" / trained.path)]}).to_csv(sheet, index=False)
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"case_id": ["X", trained.case_id], "survival_months": [3.0, 4.0], "censorship": [0, 1]}).to_csv(
        outcomes, index=False)
    cfg = dict(TINY_DEMO, validation={"slide_sheet": str(sheet), "clinical": str(outcomes)})
    proc = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode != 0
    assert (f"validation cohort: 1 patient(s) are also in the training cohort ({trained.case_id}); an external "
            "validation is on patients the models never saw: remove them from the validation cohort") in proc.stdout + proc.stderr
    # the scoring job checks the checkpoints' own record too (a models folder of another run)
    slides = pd.DataFrame({"slide_id": ["X-1", trained.slide_id], "case_id": ["X", trained.case_id], "path": ""})
    with pytest.raises(GhanetError, match=f"in the training cohort \\({trained.case_id}\\)"):
        predict.score_cohort(tiny_run / "results/models/ghanet", slides, _features_dir(tiny_run))


@bad_input("validation features of another encoder")
def test_validation_features_of_another_encoder_are_refused(tiny_run, tmp_path):
    slides = _val_slides(tiny_run)
    (tmp_path / "f").mkdir()
    for sid in slides.slide_id:
        shutil.copy(_features_dir(tiny_run) / f"{sid}.h5", tmp_path / "f" / f"{sid}.h5")
        with h5py.File(tmp_path / "f" / f"{sid}.h5", "a") as f:
            f.attrs["encoder"] = "resnet50_trunc"
    sheet = tmp_path / "validation.csv"
    slides.assign(path="x.tiff").to_csv(sheet, index=False)
    proc = ghanet_in_process("validation-score", "--models-dir", tiny_run / "results/models/abmil", "--slide-sheet",
                             sheet, "--features-dir", tmp_path / "f", "--out", tmp_path / "r.csv")
    names_item_and_fix(error_line(proc), "resnet50_trunc", "process the slide with the training run's")
    assert "no patient could be scored by abmil" in proc.stderr and not (tmp_path / "r.csv").exists()


def test_outcomes_are_read_without_omics_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "outcomes.csv"
    pd.DataFrame({"case_id": ["A", "A", "B", "B", "C", "D"], "slide_id": ["a1", "a2", "b1", "b2", "c", "d"],
                  "survival_months": [5.0, 5.0, 3.0, 4.0, -1.0, 7.0], "event": [1, 1, 0, 0, 1, 2],
                  "TP53_rnaseq": ["x", "y", "z", "w", "v", "u"]}).to_csv(path, index=False)
    outcomes, problems = validate.read_outcomes(path, "event")
    assert outcomes.to_dict("index") == {"A": {"survival_months": 5.0, "censorship": 0}}
    assert dict(problems) == {"B": "its rows disagree on survival_months or the status",
                              "C": "survival_months is -1.0, not a number >= 0", "D": "event is not 0 or 1"}
    with pytest.raises(GhanetError, match="no column censorship; it needs case_id, survival_months and censorship"):
        validate.read_outcomes(path, "censorship")
