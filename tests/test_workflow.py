"""The real Snakemake workflow on tiny cohorts: dry run, a full run, and --keep-going past a bad slide."""

import json

import h5py

import pandas as pd
import pytest
import yaml

from conftest import CMU_SLIDE, REPO, TINY_DEMO, error_line, ghanet_in_process, snakemake


def _config(tmp_path, extra):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(extra))
    return path


def test_dry_run_lists_every_stage(tmp_path):
    proc = snakemake(tmp_path, "-n", configfile=_config(tmp_path, TINY_DEMO))
    assert proc.returncode == 0, proc.stderr
    for rule in ("demo_cohort", "segment", "tile", "extract", "splits", "genes", "train", "evaluate"):
        assert rule in proc.stdout


def test_snakemake_lint_is_clean(tmp_path):
    """Snakemake's own linter finds nothing (rules and helper functions apart, logs, conda envs)."""
    proc = snakemake(tmp_path, "--lint", configfile=REPO / "config.yaml", cores=None)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Congratulations" in proc.stdout + proc.stderr


def test_config_typo_stops_the_workflow_with_one_line(tmp_path):
    proc = snakemake(tmp_path, "-n", configfile=_config(tmp_path, {"tilling": {"patch_size": 128}}))
    assert proc.returncode != 0
    assert "unknown key(s) 'tilling'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end(tiny_run):
    tmp_path = tiny_run
    sheet = pd.read_csv(tmp_path / "results/demo/slides.csv")
    assert len(sheet) >= 4
    for sid in sheet.slide_id:
        stats = json.loads((tmp_path / f"results/segment/{sid}.stats.json").read_text())
        assert stats["n_pieces"] >= 1
        assert (tmp_path / f"results/segment/{sid}.qc.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
        assert (tmp_path / f"results/tile/{sid}.h5").stat().st_size > 0
        assert (tmp_path / f"results/benchmarks/tile/{sid}.tsv").exists()
        assert (tmp_path / f"results/logs/segment/{sid}.log").exists()
        with h5py.File(tmp_path / f"results/features/efficientnet_lite0/{sid}.h5") as f:
            assert f["features"].shape[1] == 1280 and f["features"].shape[0] == f["coords"].shape[0] > 0
    report = pd.read_csv(tmp_path / "results/report/slides.csv")
    new = pd.read_csv(tmp_path / "results/demo/new_patients.csv")  # the demo's patient to score
    held_out = pd.read_csv(tmp_path / "results/demo/validation.csv")  # and its validation cohort
    assert sorted(report.slide_id) == sorted([*sheet.slide_id, *new.slide_id, *held_out.slide_id])
    assert (report.n_tiles > 0).all()
    # what the HTML report shows of slide QC: one contact sheet for these 11 slides
    assert [p.name for p in sorted((tmp_path / "results/report/slide_qc").glob("*.jpg"))] == ["slides_001.jpg"]
    for k in range(2):
        sel = json.loads((tmp_path / f"results/genes/fold_{k}/selection.json").read_text())
        assert sel["fold"] == k and all(n >= 1 for n in sel["sizes"].values())
        assert (tmp_path / f"results/cohort/fold_{k}.csv").exists()
    # every model on every fold, compared out of fold
    table = pd.read_csv(tmp_path / "results/evaluate/comparison.csv")
    assert sorted(table.model) == ["abmil", "ghanet", "snn"] and (table.folds == 2).all()
    folds = pd.read_csv(tmp_path / "results/evaluate/folds.csv")
    assert len(folds) == 6 and folds.n_val.sum() == 3 * len(set(sheet.case_id))
    for png in ("km.png", "c_index.png"):
        assert (tmp_path / "results/evaluate" / png).stat().st_size > 0
    for model in ("abmil", "ghanet", "snn"):
        assert (tmp_path / f"results/models/{model}/fold_1/loss.png").stat().st_size > 0
    # the new patient scored from the slide alone, with heatmaps
    pred = pd.read_csv(tmp_path / "results/predict/predictions.csv")
    assert list(pred.case_id) == list(new.case_id) and (pred.status == "ok").all() and pred.risk.notna().all()
    assert pred.risk_group.isin(["low", "high"]).all()
    sid = new.slide_id[0]
    assert (tmp_path / f"results/predict/heatmaps/{sid}.heatmap.png").stat().st_size > 0
    assert (tmp_path / f"results/predict/heatmaps/{sid}.top_tiles.jpg").stat().st_size > 0
    assert (tmp_path / "results/predict/heatmaps/gallery_001.jpg").stat().st_size > 0
    # nothing left to do afterwards (what an edit reruns: tests/test_reruns.py)
    again = snakemake(tmp_path, "-n", configfile=_config(tmp_path, TINY_DEMO))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_the_whole_demo_runs_without_network(tiny_run):
    if (tiny_run / "network.txt").read_text() != "cut":
        pytest.skip("`unshare -n` is not allowed here, so the run had the network")
    # the run above finished with no network interface at all: every weight and file was local
    assert (tiny_run / "results/evaluate/comparison.csv").exists()


@pytest.mark.slow
def test_keep_going_past_a_bad_slide(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_text("not a slide")
    sheet = tmp_path / "slides.csv"
    pd.DataFrame({
        "slide_id": ["good", "broken", "missing"],
        "case_id": ["p1", "p2", "p3"],
        "path": [str(CMU_SLIDE), str(bad), str(tmp_path / "gone.svs")],
    }).to_csv(sheet, index=False)
    cfg = _config(tmp_path, {"cohort": {"slide_sheet": str(sheet)}})
    proc = snakemake(tmp_path, "--keep-going", configfile=cfg)
    assert proc.returncode != 0
    assert (tmp_path / "results/tile/good.h5").exists()
    assert not (tmp_path / "results/segment/broken.geojson").exists()
    log = (tmp_path / "results/logs/segment/broken.log").read_text()
    assert "slide broken" in log and "not a whole-slide image" in log
    log = (tmp_path / "results/logs/segment/missing.log").read_text()
    assert "slide missing" in log and "file not found" in log
    # the failure summary names every failed slide with its reason, and nothing else
    failures = pd.read_csv(tmp_path / "results/report/failures.csv")
    assert sorted(failures.item) == ["broken", "missing"] and set(failures.stage) == {"segment"}
    assert set(failures.status) == {"failed"}
    assert "not a whole-slide image" in failures.set_index("item").at["broken", "reason"]
    # and so does the report's opening section (a report of what completed: it needs every file it shows)
    proc = snakemake(tmp_path, "--report", "report.html", "results/tile/good.h5", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    assert "Failures</strong> (2)" in html
    assert "(failed): slide broken: " in html and "(failed): slide missing: file not found" in html


@pytest.mark.slow
def test_predict_on_raw_slides_reproduces_the_evaluated_risk(tiny_run, tmp_path):
    """`ghanet predict` on a held-out demo patient's raw slides: in the column of the fold that
    held the patient out, the risk the evaluation stage scored (segmented, tiled and extracted
    again from the slide files with the checkpoints' settings)."""

    risks = pd.read_csv(tiny_run / "results/models/ghanet/fold_1/risks.csv").set_index("case_id")
    case = risks.index[risks.split == "val"][0]
    sheet = pd.read_csv(tiny_run / "results/demo/slides.csv")
    mine = sheet[sheet.case_id == case].assign(path=lambda d: [str(tiny_run / "results/demo" / p) for p in d.path])
    mine.to_csv(tmp_path / "new.csv", index=False)
    proc = ghanet_in_process("predict", "--slide-sheet", tmp_path / "new.csv", "--models-dir",
                      tiny_run / "results/models/ghanet", "--out", tmp_path / "p.csv", "--device", "cpu",
                      "--threads", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = pd.read_csv(tmp_path / "p.csv").set_index("case_id").loc[case]
    assert row.status == "ok" and row.n_tiles == risks.at[case, "n_patches"]
    assert row.risk_fold_1 == pytest.approx(risks.at[case, "risk"], abs=1e-5)


@pytest.mark.slow
def test_a_cohort_trains_on_the_slides_that_succeed(tmp_path):
    """cohort.on_slide_error: skip: one unreadable slide and one missing file are recorded, not
    fatal; slides.csv and the manifest are written, the patient left without a slide is excluded
    and listed, every model trains on the rest, and the report builds."""
    from ghanet_pipeline import demo

    clinical, signatures = demo.clinical_table(10, 0)
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    signatures.to_csv(tmp_path / "signatures.csv", index=False)
    (tmp_path / "broken.svs").write_text("not a slide")
    paths = {sid: str(CMU_SLIDE) for sid in clinical.slide_id}
    lone = clinical.groupby("case_id").slide_id.count().pipe(lambda n: n[n == 1].index)
    broken = clinical[clinical.case_id == lone[0]].slide_id.iloc[0]  # that patient's only slide
    gone = clinical[clinical.case_id == lone[1]].slide_id.iloc[0]
    paths[broken], paths[gone] = str(tmp_path / "broken.svs"), str(tmp_path / "gone.svs")
    pd.DataFrame({"slide_id": list(paths), "case_id": clinical.set_index("slide_id").loc[list(paths)].case_id,
                  "path": list(paths.values())}).to_csv(tmp_path / "slides.csv", index=False)
    # a new patient whose slide is missing: its row carries the slide's first failure and its stage
    pd.DataFrame({"slide_id": ["NEW-OK-S1", "NEW-GONE-S1"], "case_id": ["NEW-OK", "NEW-GONE"],
                  "path": [str(CMU_SLIDE), str(tmp_path / "new_gone.svs")]}).to_csv(tmp_path / "new.csv", index=False)
    # the slide stages as chunks: 17 copies of one small slide, whose jobs would be mostly start-up
    # (a job per slide fails and skips bad slides in test_keep_going_past_a_bad_slide and test_config_keys)
    cfg = _config(tmp_path, {
        "slides_per_job": 20,
        "cohort": {"slide_sheet": "slides.csv", "clinical": "clinical.csv", "signatures": "signatures.csv",
                   "on_slide_error": "skip", "max_lost_fraction": 0.2},
        "splits": {"folds": 2}, "labels": {"n_bins": 2},
        "train": {"epochs": 1, "grad_accum": 2, "models": ["ghanet", "abmil", "snn"]},
        "evaluate": {"heatmaps": False}, "predict": {"slide_sheet": "new.csv", "heatmaps": False}})
    proc = snakemake(tmp_path, configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    slides = pd.read_csv(tmp_path / "results/report/slides.csv").set_index("slide_id")
    assert slides.at[broken, "status"] == "failed" and "not a whole-slide image" in slides.at[broken, "reason"]
    assert slides.at[gone, "status"] == "failed" and "file not found" in slides.at[gone, "reason"]
    assert (slides.drop([broken, gone, "NEW-GONE-S1"]).status == "ok").all()
    manifest = pd.read_csv(tmp_path / "results/features/efficientnet_lite0/manifest.csv").set_index("slide_id")
    assert manifest.at[broken, "status"] == "failed" and manifest.at[broken, "n_tiles"] == 0
    failures = pd.read_csv(tmp_path / "results/report/failures.csv")
    assert {broken, gone} <= set(failures.item)
    first = failures.drop_duplicates("item").set_index("item")
    assert first.at[broken, "stage"] == first.at[gone, "stage"] == first.at["NEW-GONE-S1", "stage"] == "segment"
    predictions = pd.read_csv(tmp_path / "results/predict/predictions.csv").set_index("case_id")
    assert predictions.at["NEW-OK", "status"] == "ok" and predictions.at["NEW-GONE", "status"] == "failed"
    why = predictions.at["NEW-GONE", "reason"]
    assert why.startswith("slide NEW-GONE-S1 failed at segment: ") and "file not found" in why, why
    assert "QC image" not in why
    assert failures.set_index(["stage", "item"]).loc[("predict", "NEW-GONE"), "reason"] == why
    excluded = failures[(failures.stage == "train") & (failures.status == "excluded")]
    assert lone[0] in set(excluded.item) and "no usable slide" in excluded.set_index("item").at[lone[0], "reason"]
    table = pd.read_csv(tmp_path / "results/evaluate/comparison.csv")
    assert sorted(table.model) == ["abmil", "ghanet", "snn"]
    assert snakemake(tmp_path, "--report", "report.html", configfile=cfg).returncode == 0
    # the run stops instead when more of the cohort is lost than cohort.max_lost_fraction
    line = error_line(ghanet_in_process("feature-manifest", "--features",
                                        *sorted((tmp_path / "results/features/efficientnet_lite0").glob("DEMO-*.h5")),
                                        "--out", tmp_path / "m.csv", "--max-lost-fraction", "0.1"))
    assert f"2 of {len(paths)} slides failed" in line and "raise cohort.max_lost_fraction" in line


def test_cohort_jobs_fit_a_command_line_at_scale(tmp_path):
    """A shell command is one argument to bash, at most 128 KB: the cohort-wide jobs read their
    slide lists from the sheet, so 4,000 slides' paths never go on a command line (they did, and
    a cohort of ~2,500 slides stopped at the feature manifest with 'Argument list too long')."""
    n = 4000
    ids = [f"PATIENT-{i:05d}" for i in range(n)]
    pd.DataFrame({"slide_id": [f"{p}-SLIDE-1" for p in ids], "case_id": ids,
                  "path": [f"/data/slides/{p}-SLIDE-1.svs" for p in ids], "mpp": 0.25}).to_csv(
        tmp_path / "slides.csv", index=False)
    cfg = _config(tmp_path, {"cohort": {"slide_sheet": str(tmp_path / "slides.csv")}})
    proc = snakemake(tmp_path, "-n", "-p", "results/features/efficientnet_lite0/manifest.csv",
                     "results/report/slides.csv", configfile=cfg, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = [line for line in proc.stdout.splitlines() if "-m ghanet_pipeline" in line]
    longest = max(commands, key=len)
    assert len(commands) == 3 * n + 2 and len(longest) < 4000, longest[:300]
    for rule in ("feature-manifest", "slide-report"):
        assert any(f"ghanet_pipeline {rule} " in c for c in commands)
