"""A cohort with survival but no omics: the slide-only model trains and is evaluated; the models
that need omics (G-HANet's reconstruction targets, the SNN's input) are skipped and said when
train.models is left at its default, refused with one line when the user asked for them."""

import pandas as pd
import pytest

from conftest import CMU_SLIDE, TINY_DEMO, snakemake, write_config
from ghanet_pipeline import demo, genes, train
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.errors import GhanetError
from test_train import make_fold, sections


def _survival_only(tmp_path):
    clinical, signatures = demo.clinical_table(4, 0)
    omics = [c for c in clinical.columns if c.endswith(("_rnaseq", "_cnv", "_mut"))]
    clinical.drop(columns=omics).to_csv(tmp_path / "clin.csv", index=False)
    signatures.to_csv(tmp_path / "sig.csv", index=False)
    pd.DataFrame({"slide_id": clinical.slide_id, "case_id": clinical.case_id, "path": str(CMU_SLIDE)}
                 ).to_csv(tmp_path / "slides.csv", index=False)
    return {"slide_sheet": str(tmp_path / "slides.csv"), "clinical": str(tmp_path / "clin.csv"),
            "signatures": str(tmp_path / "sig.csv")}


def test_the_slide_model_trains_and_the_others_are_skipped_and_said(tmp_path):
    cfg = dict(TINY_DEMO, cohort=_survival_only(tmp_path), evaluate={"heatmaps": True},
               train=dict(TINY_DEMO["train"], models=["all"]))  # a set takes what the cohort can train
    proc = snakemake(tmp_path, "-n", "-p", configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("survival-only cohort (no omic columns in" in proc.stderr
            and "skipped: ghanet, snn, snn_mcat, mcat" in proc.stderr)
    trained = {line.split("--model ")[1].split()[0] for line in proc.stdout.splitlines()
               if "-m ghanet_pipeline train " in line}
    assert trained == {"ghanet_norecon", "abmil", "transmil", "clam_sb", "dsmil", "deepsets", "deepattnmisl"}
    genes_cmds = [line for line in proc.stdout.splitlines() if "-m ghanet_pipeline genes " in line]
    assert len(genes_cmds) == 2 and not any("--signatures" in c for c in genes_cmds)  # time bins only
    assert "rule evaluate" in proc.stdout and "rule heatmaps" not in proc.stdout  # heatmaps are G-HANet's


def test_asking_for_an_omics_model_without_omics_is_one_line(tmp_path):
    cohort = _survival_only(tmp_path)
    cfg = dict(TINY_DEMO, cohort=cohort, train=dict(TINY_DEMO["train"], models=["ghanet", "abmil"]))
    proc = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode != 0
    assert ("train.models lists ghanet, which need omics, and this cohort has none (no omic columns in "
            f"{cohort['clinical']}); set train.models: [slide-only] or add the omics") in proc.stdout + proc.stderr


def test_abmil_trains_on_a_selection_without_families_and_ghanet_refuses(tmp_path):
    make_fold(tmp_path)
    sel = genes.run(tmp_path / "patients.csv.gz", tmp_path / "fold_0.csv", None, validate_config({})["genes"],
                    {"n_bins": 2, "fit_on": "train"}, out_dir=tmp_path / "genes", fold=0)
    assert sel["families"] == {} and len(sel["bin_edges"]) == 3
    args = dict(patients_csv=tmp_path / "patients.csv.gz", fold_csv=tmp_path / "fold_0.csv",
                selection_json=tmp_path / "genes/selection.json", scaler_csv=tmp_path / "genes/scaler.csv",
                features_dir=tmp_path / "features", sections=sections(), device="cpu", threads=1)
    res = train.run("abmil", 0, out_dir=tmp_path / "abmil", **args)
    risks = pd.read_csv(tmp_path / "abmil/risks.csv")
    assert res and len(risks) == 14 and risks.risk.notna().all()
    # the ablation needs no omics: the same network, its family heads unused
    train.run("ghanet_norecon", 0, out_dir=tmp_path / "norecon", **args)
    assert pd.read_csv(tmp_path / "norecon/risks.csv").risk.notna().all()
    for model in ("ghanet", "snn", "snn_mcat", "mcat"):
        with pytest.raises(GhanetError, match=f"{model} needs omics.*train.models: \\[slide-only\\]"):
            train.run(model, 0, out_dir=tmp_path / model, **args)
