"""A cohort given as the features it already has (cohort.features): CLAM's and MCAT's .pt, CLAM's,
TRIDENT's and STAMP's HDF5, ours. The run starts at the cohort stages; the encoder is the files'
own where they carry one and extract.encoder where not; heatmaps are drawn where coords and the
slides are here and skipped, with the reason, where not. And the TCGA recipe: the example config on
a generated cohort in exactly MCAT's layout."""

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import mcat_layout
import other_tools
from conftest import REPO, TINY_DEMO, error_line, ghanet_in_process, job_counts, snakemake, write_config
from ghanet_pipeline import features, formats, models, predict
from ghanet_pipeline.errors import GhanetError

RECIPE = REPO / "examples" / "tcga_from_clam.yaml"
SLIDE_RULES = {"demo_cohort", "segment", "tile", "extract", "slide_report"}


def test_tcga_from_clam_features_one_config(tmp_path):
    """The README's recipe, as written: MCAT's layout under data/, the example config, nothing else
    but a shorter training. As written it plans the slide-only set (G-HANet, its ablation and the six
    baselines) on the given splits; the run trains three of them (every entry's training is
    test_models'; here, the features' seam) and evaluates them; no slide is read; the checkpoints
    say the declared encoder."""
    lay = mcat_layout.write(tmp_path / "data", patients=20)
    short = write_config(tmp_path / "short.yaml", {"train": {"epochs": 2, "grad_accum": 4}})
    proc = snakemake(tmp_path, "-n", "--configfile", str(RECIPE), str(short))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = job_counts(proc.stdout)
    assert not SLIDE_RULES & set(jobs), jobs
    assert jobs["train"] == 5 * len(models.SLIDE_ONLY_SET) and jobs["splits"] == 1 and jobs["evaluate"] == 1
    three = write_config(tmp_path / "short.yaml", {"train": {"epochs": 2, "grad_accum": 4,
                                                             "models": ["ghanet", "abmil", "deepattnmisl"]}})
    proc = snakemake(tmp_path, "--configfile", str(RECIPE), str(three), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    out = tmp_path / "results" / "tcga_blca"
    manifest = pd.read_csv(out / "features/resnet50_trunc/manifest.csv")
    assert len(manifest) == len(lay["slides"]) and set(manifest.format) == {"pt"}
    assert set(manifest.encoder) == {"resnet50_trunc"} and set(manifest.dim) == {1024}
    assert not (out / "segment").exists() and not (out / "tile").exists()
    summary = yaml.safe_load((out / "cohort/splits.json").read_text())
    assert summary["stratified_by"] == "given split files" and summary["patients"] == 20
    comparison = pd.read_csv(out / "evaluate/comparison.csv")
    assert list(comparison.model) == ["ghanet", "abmil", "deepattnmisl"] and comparison.c_index_mean.notna().all()
    ckpt = torch.load(out / "models/ghanet/fold_0/model.pt", weights_only=False)
    assert ckpt["encoder"]["encoder"] == "resnet50_trunc" and ckpt["model_args"]["in_dim"] == 1024
    # the given fold, not ours: fold 0's held-out patients are splits_0.csv's val column
    given = pd.read_csv(lay["split_dir"] / "splits_0.csv").val.dropna()
    assert set(pd.read_csv(out / "models/ghanet/fold_0/risks.csv").query("split == 'val'").case_id) == set(given)


def _clam_copy(features_dir, out_dir, slide_ids):
    """Our feature files rewritten as CLAM's extract_features_fp writes them (other_tools.clam_features):
    h5_files/<slide>.h5 with `features` and `coords` and no attribute at all."""
    for sid in slide_ids:
        feats, coords, _ = features.read_features(features_dir / f"{sid}.h5")
        other_tools.clam_features(out_dir / "h5_files" / f"{sid}.h5", feats, coords)


def test_clam_h5_features_with_slides_train_and_draw_heatmaps(tiny_run, tmp_path):
    """The tiny demo's features as CLAM .h5 files with coords, and its slide sheet: the run trains
    from them without touching a slide, and draws heatmaps over the slides that are here; a patient
    whose slide is gone gets none, and the log says why."""
    demo_dir = tiny_run / "results" / "demo"
    sheet = pd.read_csv(demo_dir / "slides.csv")
    _clam_copy(tiny_run / "results/features/efficientnet_lite0", tmp_path / "clam", sheet.slide_id)
    slides = tmp_path / "slides"
    shutil.copytree(demo_dir / "slides", slides)
    gone = sheet.slide_id.iloc[0]
    (slides / f"{gone}.tiff").unlink()
    sheet.assign(path=[f"slides/{s}.tiff" for s in sheet.slide_id]).to_csv(tmp_path / "sheet.csv", index=False)
    # a new patient scored from a slide alone, by the models trained on CLAM's files
    pd.DataFrame({"slide_id": ["NEW-1-S1"], "case_id": ["NEW-1"], "path": [str(slides / f"{sheet.slide_id.iloc[1]}.tiff")]}
                 ).to_csv(tmp_path / "new.csv", index=False)
    cfg = dict(TINY_DEMO, evaluate={"heatmaps": True}, train=dict(TINY_DEMO["train"], models=["ghanet"]),
               cohort={"features": str(tmp_path / "clam"), "slide_sheet": str(tmp_path / "sheet.csv"),
                       "clinical": str(demo_dir / "clinical.csv"), "signatures": str(demo_dir / "signatures.csv")},
               predict={"slide_sheet": str(tmp_path / "new.csv")})
    proc = snakemake(tmp_path, configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "results/tile").glob("*.h5")] == ["NEW-1-S1.h5"]  # the new slide alone
    manifest = pd.read_csv(tmp_path / "results/features/efficientnet_lite0/manifest.csv")
    assert set(manifest.format) == {"clam"} and set(manifest.encoder) == {"efficientnet_lite0"}
    drawn = {p.name.split(".")[0] for k in (0, 1) for p in (tmp_path / f"results/heatmaps/fold_{k}").glob("*.heatmap.png")}
    assert drawn == set(sheet.slide_id) - {gone}
    logs = "".join((tmp_path / f"results/logs/heatmaps/fold_{k}.log").read_text() for k in (0, 1))
    assert f"skipped: slide {gone}: slide file {tmp_path / 'slides' / gone}.tiff not found" in logs
    scored = pd.read_csv(tmp_path / "results/predict/predictions.csv").set_index("case_id")
    assert scored.at["NEW-1", "status"] == "ok" and np.isfinite(scored.at["NEW-1", "risk"])
    assert (tmp_path / "results/predict/heatmaps/NEW-1-S1.heatmap.png").exists()


def test_without_a_sheet_heatmaps_are_skipped_and_said(tmp_path):
    lay = mcat_layout.write(tmp_path / "data", patients=8)
    cfg = {"cohort": {"features": str(lay["pt_files"]), "clinical": str(lay["clinical"]),
                      "signatures": str(lay["signatures"])}, "splits": {"folds": 2}, "labels": {"n_bins": 2},
           "extract": {"encoder": "resnet50_trunc"}}
    proc = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "heatmaps skipped: the cohort is given as features without a slide sheet" in proc.stderr
    assert "heatmaps" not in job_counts(proc.stdout) and not SLIDE_RULES & set(job_counts(proc.stdout))


def test_trident_and_stamp_files_are_read(tmp_path):
    feats = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    coords = np.arange(10).reshape(5, 2) * 512
    other_tools.trident_features(tmp_path / "trident.h5", feats, coords, encoder="uni_v1", patch_size=256,
                                 level0_magnification=40, target_magnification=20, width=6000, height=6000)
    other_tools.stamp_features(tmp_path / "stamp.h5", feats, coords * 0.25, extractor="mahmood-uni",
                               tile_size_um=256.0, tile_size_px=224)
    got, c, attrs = features.read_features(tmp_path / "trident.h5")
    assert attrs["format"] == "trident" and np.array_equal(c, coords) and np.allclose(got, feats)
    assert attrs["trident_encoder"] == "uni_v1" and attrs["encoder"] == "uni"  # kept on the features dataset
    got, c, attrs = features.read_features(tmp_path / "stamp.h5")
    assert attrs["format"] == "stamp" and c is None and attrs["encoder"] == "mahmood-uni"
    assert got.dtype == np.float32 and np.allclose(got, feats, atol=1e-2)
    table = features.manifest([tmp_path / "stamp.h5"], tmp_path / "m.csv", declared="uni", slide_ids=["s"])
    assert table.encoder[0] == "mahmood-uni" and table.n_tiles[0] == 5  # the file's own name
    # TRIDENT's name is read and checked against the declared encoder
    table = features.manifest([tmp_path / "trident.h5"], tmp_path / "m.csv", declared="uni", slide_ids=["s"])
    assert table.encoder[0] == "uni" and table.format[0] == "trident"
    with pytest.raises(GhanetError, match="made by TRIDENT with encoder uni_v1, and extract.encoder says "
                                          "resnet50_trunc; set extract.encoder: uni"):
        features.manifest([tmp_path / "trident.h5"], tmp_path / "m.csv", declared="resnet50_trunc", slide_ids=["s"])


def test_heatmap_geometry_from_each_tools_own_attributes(tmp_path):
    """What each writer says of its tiles becomes the level-0 size, read level and shown size the
    heatmaps need: ours as is, TRIDENT's patch_size_level0, CLAM's patch file (patch_size at
    patch_level times its downsample), and for CLAM's bare feature file the tiling settings on the
    slide's resolution; with neither, one line says what to give."""
    import openslide

    from ghanet_pipeline import heatmap
    from ghanet_pipeline.demo import write_pyramid

    write_pyramid(tmp_path / "p.tiff", np.full((2967, 2220, 3), 230, np.uint8), 0.25)
    with openslide.OpenSlide(str(tmp_path / "p.tiff")) as slide:
        coords = np.array([[0, 0], [512, 512]])
        other_tools.clam_patches(tmp_path / "patches/s.h5", coords, slide, "s", patch_size=256, patch_level=1)
        other_tools.clam_features(tmp_path / "h5_files/s.h5", np.zeros((2, 4)), coords)
        other_tools.trident_features(tmp_path / "trident/s.h5", np.zeros((2, 4)), coords, encoder="resnet50",
                                     patch_size=256, level0_magnification=40, target_magnification=20,
                                     width=2220, height=2967)
        tiling = {"patch_size": 256, "target_mpp": 1.0}
        clam_attrs = features.feature_coords_attrs(tmp_path / "h5_files/s.h5", features.read_features(
            tmp_path / "h5_files/s.h5")[2])
        assert "patch_size" not in clam_attrs  # CLAM writes none: this was the KeyError
        got = heatmap.tile_geometry(clam_attrs, slide, "s", 0.5, tiling)
        assert (got["patch_level"], got["patch_size_level0"], got["target_patch_size"]) == (0, 512, 256)
        assert got["target_mpp"] == 1.0 and formats.tile_sizes(got) == (512, 256)
        with h5py.File(tmp_path / "patches/s.h5") as f:
            patch = {k: features.plain_attr(v) for k, v in f["coords"].attrs.items()}
        got = heatmap.tile_geometry(clam_attrs, slide, "s", None, tiling, patch)
        assert got["patch_size_level0"] == round(256 * slide.level_downsamples[1]) and got["target_patch_size"] == 256
        trident = features.feature_coords_attrs(tmp_path / "trident/s.h5", {})
        got = heatmap.tile_geometry(trident, slide, "s", 0.25, tiling)
        assert (got["patch_size_level0"], got["target_patch_size"], got["target_mpp"]) == (512, 256, 0.5)
        with pytest.raises(GhanetError, match="slide s: its feature file says no patch size and the slide has no "
                                              "resolution; give the sheet's mpp column"):
            heatmap.tile_geometry(clam_attrs, slide, "s", None, tiling)


def test_missing_feature_files_are_one_line_naming_them(tmp_path):
    lay = mcat_layout.write(tmp_path / "data", patients=6)
    (lay["pt_files"] / f"{lay['slides'][1][:-4]}.pt").unlink()
    proc = ghanet_in_process("feature-manifest", "--features-dir", lay["pt_files"], "--clinical", lay["clinical"],
                             "--declared-encoder", "resnet50_trunc", "--out", tmp_path / "m.csv")
    line = error_line(proc)
    assert f"no feature file for 1 of {len(lay['slides'])} slides ({lay['slides'][1][:-4]})" in line
    assert "pt_files/<slide_id>.pt" in line and "remove those slides" in line
    assert not (tmp_path / "m.csv").exists()


def test_our_files_of_another_encoder_are_refused(tmp_path):
    formats.write_features(tmp_path / "s1.h5", np.zeros((2, 4)), np.zeros((2, 2)), {},
                           {"encoder": "uni", "ghanet_version": "x"})
    with pytest.raises(GhanetError, match="made with encoder uni, and extract.encoder says resnet50_trunc; "
                                          "set extract.encoder: uni"):
        features.manifest(features.imported(tmp_path, ["s1"], "resnet50_trunc"), tmp_path / "m.csv",
                          declared="resnet50_trunc", slide_ids=["s1"])


def test_predict_refuses_slides_of_another_encoder_than_the_declared_one():
    ckpt = {"encoder": {"encoder": "resnet50_trunc", "dim": 1024}, "config": {}, "slide_mpps": []}
    predict.check_slide("NEW-1", {"encoder": "resnet50_trunc"}, ckpt, False)
    with pytest.raises(GhanetError, match="features made with encoder = efficientnet_lite0, the models with "
                                          "resnet50_trunc"):
        predict.check_slide("NEW-1", {"encoder": "efficientnet_lite0"}, ckpt, False)
