"""Prediction from slides only: every fold's model, the checks on what it is given, and heatmaps."""

import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import CMU_SLIDE, bad_input, error_line, ghanet_in_process, names_item_and_fix
from ghanet_pipeline import features, formats, predict
from test_train import DIM, make_fold, train_once


@pytest.fixture(scope="module")
def two_folds(tmp_path_factory):
    """G-HANet trained on two folds of the hand-built cohort (toy features at 0.25 um/px)."""
    root = tmp_path_factory.mktemp("twofolds")
    for fold in (0, 1):
        make_fold(root, fold=fold)
        train_once(root, "ghanet", root / f"models/ghanet/fold_{fold}", fold=fold)
    return root


def _sheet(tmp_path, slide_ids, case="NEW"):
    path = tmp_path / "sheet.csv"
    pd.DataFrame({"slide_id": slide_ids, "case_id": case, "path": [f"{s}.tiff" for s in slide_ids]}).to_csv(path, index=False)
    return path


def _features(root, sid, n, mpp=0.25, seed=0):
    feats = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    formats.write_features(root / f"{sid}.h5", feats, np.zeros((n, 2), int), {},
                           {"encoder": "toy", "dim": DIM, "weights_sha256": "x", "precision": "fp32",
                            "patch_size": 256, "target_mpp": 0.5, "level0_mpp": mpp})


def test_every_fold_scores_and_the_ensemble_is_their_mean(two_folds, tmp_path):
    _features(tmp_path / "f", "A1", 12)
    _features(tmp_path / "f", "A2", 5, seed=1)
    table = predict.run(_sheet(tmp_path, ["A1", "A2"]), two_folds / "models/ghanet", out_csv=tmp_path / "p.csv",
                        features_dir=tmp_path / "f")
    row = table.iloc[0]
    assert row.status == "ok" and row.n_tiles == 17 and row.n_slides == 2
    assert row.risk == pytest.approx((row.risk_fold_0 + row.risk_fold_1) / 2)
    assert row.risk_fold_0 != row.risk_fold_1
    cut = np.mean([c["risk_cutoffs"]["median"] for c in predict.load_models(two_folds / "models/ghanet")])
    assert row.risk_group == ("high" if row.risk >= cut else "low")
    assert pd.read_csv(tmp_path / "p.csv").case_id.tolist() == ["NEW"]


@bad_input("new slide of another scan resolution")
def test_slide_whose_tiles_show_another_resolution_is_refused_unless_allowed(two_folds, tmp_path):
    """Training slides were 40x (0.25 um/px), tiles 20x (0.5). A 20x slide's tiles are 20x too:
    scored. A 10x slide's "20x" tiles would be upsampled: refused, in its row, unless allowed."""
    _features(tmp_path / "f", "B1", 8, mpp=0.5)
    _features(tmp_path / "f", "B2", 8, mpp=1.0)
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"slide_id": ["B1", "B2"], "case_id": ["20x", "10x"], "path": ["B1.tiff", "B2.tiff"]}).to_csv(
        sheet, index=False)
    args = ["predict", "--slide-sheet", sheet, "--models-dir", two_folds / "models/ghanet", "--features-dir",
            tmp_path / "f", "--out", tmp_path / "p.csv"]
    assert ghanet_in_process(*args).returncode == 0
    rows = pd.read_csv(tmp_path / "p.csv").set_index("case_id")
    assert rows.at["20x", "status"] == "ok" and rows.at["10x", "status"] == "failed" and np.isnan(rows.at["10x", "risk"])
    names_item_and_fix(rows.at["10x", "reason"], "slide B2 is scanned at 1 um/px", "set predict.allow_other_mpp: true")
    assert "0.5" in rows.at["10x", "reason"]
    assert ghanet_in_process(*args, "--allow-other-mpp").returncode == 0
    assert pd.read_csv(tmp_path / "p.csv").status.tolist() == ["ok", "ok"]


def test_a_missing_feature_file_costs_only_its_patient(two_folds, tmp_path):
    _features(tmp_path / "f", "G1", 8)
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"slide_id": ["G1", "G2"], "case_id": ["here", "gone"], "path": ["G1.tiff", "G2.tiff"]}).to_csv(
        sheet, index=False)
    table = predict.run(sheet, two_folds / "models/ghanet", out_csv=tmp_path / "p.csv", features_dir=tmp_path / "f")
    rows = table.set_index("case_id")
    assert rows.at["here", "status"] == "ok" and rows.at["gone", "status"] == "failed"
    assert "G2.h5 not found" in rows.at["gone", "reason"]


@bad_input("model directory missing a fold")
def test_a_model_directory_missing_a_fold_is_named(two_folds, tmp_path):
    models = tmp_path / "ghanet"
    shutil.copytree(two_folds / "models/ghanet/fold_0", models / "fold_0")
    _features(tmp_path / "f", "C1", 8)
    proc = ghanet_in_process("predict", "--slide-sheet", _sheet(tmp_path, ["C1"]), "--models-dir", models,
                      "--features-dir", tmp_path / "f", "--out", tmp_path / "p.csv")
    line = error_line(proc)
    assert "fold_1/model.pt" in line
    names_item_and_fix(line, "has no fold 1", "rerun its training")


def test_a_patient_without_tiles_gets_no_score_and_a_reason(two_folds, tmp_path):
    _features(tmp_path / "f", "D1", 0)
    _features(tmp_path / "f", "E1", 9)
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"slide_id": ["D1", "E1"], "case_id": ["empty", "fine"], "path": ["D1.tiff", "E1.tiff"]}).to_csv(sheet, index=False)
    table = predict.run(sheet, two_folds / "models/ghanet", out_csv=tmp_path / "p.csv", features_dir=tmp_path / "f")
    empty = table.set_index("case_id").loc["empty"]
    assert empty.status == "no tiles" and np.isnan(empty.risk) and "no tissue tile in D1" in empty.reason
    assert empty.risk_group == "" and np.isnan(empty.risk_fold_0)
    assert table.set_index("case_id").at["fine", "status"] == "ok"


@bad_input("features of another encoder")
def test_features_of_another_encoder_are_refused(two_folds, tmp_path):
    feats = np.zeros((4, DIM), np.float32)
    formats.write_features(tmp_path / "f/F1.h5", feats, np.zeros((4, 2), int), {},
                           {"encoder": "uni", "weights_sha256": "x", "patch_size": 256, "target_mpp": 0.5})
    table = predict.run(_sheet(tmp_path, ["F1"]), two_folds / "models/ghanet", out_csv=tmp_path / "p.csv",
                        features_dir=tmp_path / "f")
    assert table.status.tolist() == ["failed"]
    names_item_and_fix(table.reason[0], "slide F1: features made with encoder = uni, the models with toy",
                       "process the slide with")


def test_one_real_slide_through_every_stage(tmp_path, demo_cohort):
    """The Python entry point on one real pyramidal slide: segment, tile and extract with the
    checkpoints' settings, then every fold's model; the heatmaps are drawn on the slide."""
    from ghanet_pipeline import extract, segment, tile, train
    from ghanet_pipeline.config import validate_config

    _, sheet = demo_cohort
    slide = sheet.iloc[0]
    # random encoder weights keep this fast and offline: the check is the plumbing, not the model
    cfg = validate_config({"extract": {"encoder": "efficientnet_lite0", "weights": "random"},
                           "train": {"epochs": 1, "grad_accum": 2}, "splits": {"folds": 2},
                           "model": {"hidden_dim": 32, "heads": 2, "head_dim": 8}})
    work = tmp_path / "work"
    segment.run(slide.path, slide.slide_id, cfg["segment"], geojson=work / "s.geojson", qc_png=work / "s.png",
                stats_json=work / "s.json")
    tile.run(slide.path, slide.slide_id, cfg["tile"], contours=work / "s.geojson", coords_h5=work / "c.h5",
             qc_png=work / "t.png")
    extract.run(slide.path, slide.slide_id, cfg["extract"], coords_h5=work / "c.h5", features_h5=work / "f.h5",
                device="cpu")
    real, _, attrs = features.read_features(work / "f.h5")
    # models trained on bags of this encoder's width and identity, as a real run's would be
    root = tmp_path / "cohort"
    sections = {k: cfg[k] for k in ("train", "model", "cohort", "labels", "segment", "tile", "extract", "splits")}
    for fold in (0, 1):
        make_fold(root, fold=fold, dim=real.shape[1], attrs=attrs)
        train.run("ghanet", fold, patients_csv=root / "patients.csv.gz", fold_csv=root / f"fold_{fold}.csv",
                  selection_json=root / "selection.json", scaler_csv=root / "scaler.csv",
                  features_dir=root / "features", sections=sections, out_dir=root / f"models/ghanet/fold_{fold}",
                  device="cpu", threads=1)
    res = predict.predict_slide(slide.path, root / "models/ghanet", slide_id=slide.slide_id, device="cpu",
                                heatmaps_dir=tmp_path / "heat")
    assert res["status"] == "ok" and res["n_tiles"] == len(real) > 0
    assert res["risk"] == pytest.approx((res["risk_fold_0"] + res["risk_fold_1"]) / 2)
    assert (tmp_path / f"heat/{slide.slide_id}.heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"heat/{slide.slide_id}.top_tiles.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    # every tile's scores, as a table and as QuPath detections with one measurement per map
    import json

    table = pd.read_csv(tmp_path / f"heat/{slide.slide_id}.attention.csv")
    families = list(predict.load_models(root / "models/ghanet")[0]["families"])
    assert len(table) == len(real) and {"morphology", *families} <= set(table.columns)
    assert table.morphology_percentile.between(0, 1).all()
    doc = json.loads((tmp_path / f"heat/{slide.slide_id}.attention.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(real)
    for feat, row in zip(doc["features"], table.itertuples()):
        ring = feat["geometry"]["coordinates"][0]
        assert feat["type"] == "Feature" and feat["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]
        assert ring[0] == [row.x, row.y] and ring[2] == [row.x + row.size_level0, row.y + row.size_level0]
        assert feat["properties"]["objectType"] == "detection"
        assert set(feat["properties"]["measurements"]) == {"morphology", *families}
        assert feat["properties"]["measurements"]["morphology"] == pytest.approx(row.morphology, rel=1e-5)


def test_every_slide_header_is_checked_before_anything_is_extracted(two_folds, tmp_path):
    """The raw-slide path: a 72 dpi export and a 2 um/px scan are refused in their own rows before
    extraction (the models' tiles show 0.5 um/px); the real 20x CMU slide passes."""
    from ghanet_pipeline.demo import write_pyramid

    img = np.full((1024, 1024, 3), 235, np.uint8)
    tifffile.imwrite(tmp_path / "dpi72.tif", img, tile=(256, 256), photometric="rgb", resolution=(72, 72),
                     resolutionunit="INCH")
    write_pyramid(tmp_path / "coarse.tiff", img, 2.0)
    sheet = pd.DataFrame({"slide_id": ["ok", "dpi72", "coarse"], "case_id": ["a", "b", "c"],
                          "path": [str(CMU_SLIDE), str(tmp_path / "dpi72.tif"), str(tmp_path / "coarse.tiff")],
                          "mpp": [None, None, None]})
    ckpt = predict.load_models(two_folds / "models/ghanet")[0]
    failed = predict.precheck(sheet, ckpt, allow_other_mpp=False)
    assert sorted(failed) == ["coarse", "dpi72"]
    assert "72 dpi" in failed["dpi72"] and "allow_other_mpp" in failed["coarse"]
