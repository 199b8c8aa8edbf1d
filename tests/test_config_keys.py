"""Config round-trip: every key of the schema, changed from its default, has an effect a test sees.

Each test below changes keys through `validate_config` (the path a config.yaml takes), runs the real
stage on small inputs and checks what changed; `covers` records which keys a test exercises, and
the first test fails when a schema key has none (add a test or drop the key).
"""

import json

import numpy as np
import openslide
import pandas as pd
import pytest
import torch

from conftest import CMU_SLIDE, TINY_DEMO, snakemake, write_config
from ghanet_pipeline import (demo, evaluate, extract, formats, genes, heatmap, models, predict, segment, splits, tile,
                             train)
from ghanet_pipeline.models import build as networks
from ghanet_pipeline.config import load_schema, validate_config
from ghanet_pipeline.errors import GhanetError
from test_train import make_fold, sections

COVERED: dict[str, str] = {}


def covers(*keys):
    def mark(fn):
        for key in keys:
            COVERED[key] = fn.__name__
        return fn
    return mark


def _leaves(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object":
            yield from _leaves(sub, f"{path}{key}.")
        else:
            yield f"{path}{key}"


def test_every_schema_key_is_exercised():
    keys = set(_leaves(load_schema("config")))
    assert len(keys) > 50
    assert sorted(keys - set(COVERED)) == [], "schema keys no test changes"
    assert sorted(set(COVERED) - keys) == [], "tests cover keys the schema no longer has"


def cfg(section, **changes):
    """One validated section with `changes` (what a config.yaml with those keys gives)."""
    return validate_config({section: changes})[section]


# ------------------------------------------------------------------ slides: segment, tile, extract


def _segment(tmp_path, slide, name, params=None, **kw):
    return segment.run(str(slide), name, params or cfg("segment"), geojson=tmp_path / f"{name}.geojson",
                       qc_png=tmp_path / f"{name}.png", stats_json=tmp_path / f"{name}.json", **kw)


@covers("segment.seg_mpp", "segment.saturation_threshold", "segment.min_tissue_area_mm2",
        "segment.min_hole_area_mm2", "segment.smoothing_um", "segment.remove_pen")
def test_segment_keys(demo_cohort, tmp_path):
    slide = demo_cohort[1].path[0]
    base = _segment(tmp_path, slide, "base")
    assert base["n_pieces"] > 0 and base["n_holes"] > 0 and base["pen_area_mm2"] > 0
    seg = lambda name, **ch: _segment(tmp_path, slide, name, cfg("segment", **ch))  # noqa: E731
    coarse = seg("coarse", seg_mpp=16.0)
    assert base["seg_mpp"] == pytest.approx(8.0, rel=0.02) and coarse["seg_mpp"] == pytest.approx(16.0, rel=0.02)
    assert coarse["tissue_area_mm2"] != base["tissue_area_mm2"]
    assert seg("sat", saturation_threshold=250)["n_pieces"] == 0  # nothing is that saturated
    big = seg("big", min_tissue_area_mm2=10.0)
    assert big["n_pieces"] == 0 and big["dropped_pieces"] == base["n_pieces"] + base["dropped_pieces"]
    assert seg("holes", min_hole_area_mm2=10.0)["n_holes"] == 0
    assert seg("sharp", smoothing_um=0.0)["tissue_area_mm2"] != base["tissue_area_mm2"]
    pen = seg("pen", remove_pen=False)
    assert pen["pen_area_mm2"] == 0 and pen["tissue_area_mm2"] > base["tissue_area_mm2"]


def _tile(tmp_path, slide, name, contours, params, **kw):
    tile.run(str(slide), name, params, contours=contours, coords_h5=tmp_path / f"{name}.h5",
             qc_png=tmp_path / f"{name}.png", **kw)
    return formats.read_coords(tmp_path / f"{name}.h5")


@covers("tile.target_mpp", "tile.patch_size", "tile.mpp_tolerance", "tile.min_coverage", "tile.on_empty")
def test_tile_keys(demo_cohort, tmp_path, blank_slide):
    slide = demo_cohort[1].path[0]
    _segment(tmp_path, slide, "s")
    contours = tmp_path / "s.geojson"
    run = lambda name, **ch: _tile(tmp_path, slide, name, contours, cfg("tile", **ch))  # noqa: E731
    coords, attrs = run("base")
    assert attrs["patch_size"] == 256 and attrs["patch_size_level0"] == 256 and len(coords) > 4
    coarse, a = run("coarse", target_mpp=1.0)
    assert a["patch_size_level0"] == 512 and len(coarse) < len(coords)
    small, a = run("small", patch_size=128)
    assert a["patch_size"] == 128 and len(small) > len(coords)
    assert len(run("full", min_coverage=1.0)[0]) < len(coords)
    # 0.52 mpp asked of a 0.5 mpp level: within the default 5 % it is read as is, without 0 % resized
    _, near = run("near", target_mpp=0.52)
    _, exact = run("exact", target_mpp=0.52, mpp_tolerance=0.0)
    assert near["read_size"] == near["patch_size_level0"] == 256
    assert exact["patch_size_level0"] == round(256 * 0.52 / 0.5)
    # a slide without tissue fails by default, gives an empty tile set when asked to record
    _segment(tmp_path, blank_slide, "blank")
    with pytest.raises(GhanetError, match="on_empty"):
        _tile(tmp_path, blank_slide, "blank", tmp_path / "blank.geojson", cfg("tile"))
    recorded, _ = _tile(tmp_path, blank_slide, "blank", tmp_path / "blank.geojson", cfg("tile", on_empty="record"))
    assert len(recorded) == 0


@covers("cohort.mpp_range", "tile.max_ink_fraction")
def test_resolution_range_and_ink_keys(tmp_path):
    # the CMU slide is 0.499 um/px: plausible by default, not in a range that starts at 0.6
    assert _segment(tmp_path, CMU_SLIDE, "cmu", mpp_range=validate_config({})["cohort"]["mpp_range"])["n_pieces"]
    narrow = validate_config({"cohort": {"mpp_range": [0.6, 10]}})["cohort"]["mpp_range"]
    with pytest.raises(GhanetError, match="no microns-per-pixel|outside cohort.mpp_range 0.6-10"):
        _segment(tmp_path, CMU_SLIDE, "narrow", mpp_range=narrow)
    # ink: a tile under a pen stroke is dropped at the default 5 %, kept at 100 %
    polygons = [[np.array([[0, 0], [512, 0], [512, 512], [0, 512], [0, 0]], float)]]
    ink = [[np.array([[0, 0], [60, 0], [60, 256], [0, 256], [0, 0]], float)]]  # 23 % of the first tile
    default = cfg("tile")["max_ink_fraction"]
    kept, _ = tile.tile_grid(polygons, (512, 512), 256, 0.5, ink, default)
    assert len(kept) == 3 and [0, 0] not in kept.tolist()
    assert len(tile.tile_grid(polygons, (512, 512), 256, 0.5, ink, cfg("tile", max_ink_fraction=1.0)["max_ink_fraction"])[0]) == 4


@covers("cohort.on_slide_error", "cohort.max_lost_fraction")
def test_slide_error_keys(tmp_path):
    """A bad slide fails its job, or with `skip` is recorded as failed through every slide stage;
    the manifest stops the run past max_lost_fraction (the whole run: test_workflow)."""
    from conftest import error_line, run_ghanet

    from ghanet_pipeline import features

    bad = tmp_path / "bad.svs"
    bad.write_text("not a slide")
    on_error = validate_config({"cohort": {"on_slide_error": "skip"}})["cohort"]["on_slide_error"]
    seg = ["segment", "--slide", bad, "--slide-id", "B", "--geojson", tmp_path / "b.geojson", "--qc", tmp_path / "b.png",
           "--stats", tmp_path / "b.json"]
    assert "not a whole-slide image" in error_line(run_ghanet(*seg))
    assert run_ghanet(*seg, "--on-error", on_error).returncode == 0
    assert json.loads((tmp_path / "b.json").read_text())["status"] == "failed"
    tile.run(str(bad), "B", cfg("tile"), contours=tmp_path / "b.geojson", coords_h5=tmp_path / "b.h5",
             qc_png=tmp_path / "b.tile.png", segment_stats=tmp_path / "b.json")
    extract.run(str(bad), "B", cfg("extract"), coords_h5=tmp_path / "b.h5", features_h5=tmp_path / "B.h5")
    assert features.manifest([tmp_path / "B.h5"], tmp_path / "m.csv", 1.0).status.tolist() == ["failed"]
    lost = validate_config({"cohort": {"max_lost_fraction": 0.5}})["cohort"]["max_lost_fraction"]
    with pytest.raises(GhanetError, match="1 of 1 slides failed, more than cohort.max_lost_fraction 0.5"):
        features.manifest([tmp_path / "B.h5"], tmp_path / "m.csv", lost)


@pytest.fixture(scope="module")
def few_tiles(demo_cohort, tmp_path_factory):
    """Four tiles of a demo slide, so each extraction below costs a fraction of a second."""
    tmp = tmp_path_factory.mktemp("few")
    slide = demo_cohort[1].path[0]
    _segment(tmp, slide, "s")
    coords, attrs = _tile(tmp, slide, "t", tmp / "s.geojson", cfg("tile"))
    formats.write_coords(tmp / "few.h5", coords[:4], attrs)
    return slide, tmp / "few.h5"


@covers("extract.encoder", "extract.weights", "extract.precision", "extract.channels_last")
def test_extract_keys(few_tiles, tmp_path):
    from ghanet_pipeline.encoders import cpu_supports_bf16
    from ghanet_pipeline.features import read_features

    def run(name, **ch):
        slide, coords = few_tiles
        # fp32 unless the key under test says otherwise: `auto` is bf16 on CPUs with bf16 units,
        # and the comparisons below are about the other keys
        extract.run(slide, "t", cfg("extract", **{"precision": "fp32", **ch}), coords_h5=coords,
                    features_h5=tmp_path / f"{name}.h5", device="cpu", threads=2)
        feats, _, attrs = read_features(tmp_path / f"{name}.h5")
        return feats, attrs

    base, a = run("base")
    assert base.shape == (4, 1280) and a["encoder"] == "efficientnet_lite0" and a["channels_last"]
    other, a = run("other", encoder="timm:resnet18", weights="random")
    assert other.shape == (4, 512) and a["encoder"] == "timm:resnet18"
    rand, a = run("random", weights="random")
    assert rand.shape == base.shape and not np.allclose(rand, base, atol=1e-3)
    contiguous, a = run("contiguous", channels_last=False)
    assert not a["channels_last"] and np.allclose(contiguous, base, atol=1e-4)
    half, a = run("bf16", precision="bf16")
    assert a["precision"] == "bf16" and not np.array_equal(half, base)
    assert np.linalg.norm(half - base) / np.linalg.norm(base) < 0.1
    auto, a = run("auto", precision="auto")  # on a CPU: bf16 where it has bf16 units, else fp32
    assert a["precision"] == ("bf16" if cpu_supports_bf16() else "fp32")
    assert np.array_equal(auto, half if cpu_supports_bf16() else base)


# ------------------------------------------------------------------ cohort, labels, folds, genes


@pytest.fixture(scope="module")
def clinical(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clinical")
    table, signatures = demo.clinical_table(40, 1)
    table.to_csv(tmp / "clinical.csv", index=False)
    signatures.to_csv(tmp / "signatures.csv", index=False)
    return tmp, table


def _splits(tmp, table, name, clinical_path=None, **sections_):
    full = validate_config(sections_)
    out = tmp / name
    splits.run(clinical_path or tmp / "clinical.csv", dict(zip(table.slide_id, table.case_id)), full["splits"],
               full["cohort"], full["labels"], out_dir=out)
    folds = [splits.read_fold(p) for p in sorted(out.glob("fold_*.csv"))]
    return out, folds


@covers("splits.folds", "splits.seed", "splits.split_dir", "cohort.on_problem")
def test_fold_keys(clinical, tmp_path):
    tmp, table = clinical
    _, base = _splits(tmp, table, "base")
    assert len(base) == 5
    assert len(_splits(tmp, table, "three", splits={"folds": 3})[1]) == 3
    _, seeded = _splits(tmp, table, "seed", splits={"seed": 7})
    assert [sorted(v) for _, v in seeded] != [sorted(v) for _, v in base]
    # given split files replace the drawn folds
    ids = sorted(set(table.case_id))
    for k in range(2):
        val = ids[k::2]
        pd.DataFrame({"train": pd.Series([i for i in ids if i not in val]), "val": pd.Series(val)}
                     ).to_csv(tmp_path / f"splits_{k}.csv")
    _, given = _splits(tmp, table, "given", splits={"folds": 2, "split_dir": str(tmp_path)})
    assert [sorted(v) for _, v in given] == [ids[0::2], ids[1::2]]
    # a patient with a bad outcome fails the stage, or is excluded and listed
    bad = table.assign(survival_months=np.where(table.case_id == ids[3], -1.0, table.survival_months))
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(GhanetError, match=f"patient {ids[3]}.*on_problem: exclude"):
        _splits(tmp, bad, "fail", clinical_path=tmp_path / "bad.csv")
    out, _ = _splits(tmp, bad, "exclude", clinical_path=tmp_path / "bad.csv", cohort={"on_problem": "exclude"})
    assert list(pd.read_csv(out / "exclusions.csv")["item"]) == [ids[3]]


@covers("cohort.features")
def test_features_key(tmp_path):
    """cohort.features: the plan has no slide job, trains from the given folder and names the
    encoder through the manifest (the end-to-end runs are in test_features_in)."""
    import mcat_layout

    lay = mcat_layout.write(tmp_path / "data", patients=6)
    cfg_ = {"cohort": {"features": str(lay["pt_files"]), "clinical": str(lay["clinical"]),
                       "signatures": str(lay["signatures"])}, "splits": {"folds": 2}, "labels": {"n_bins": 2},
            "extract": {"encoder": "resnet50_trunc"}}
    plan = _plan(tmp_path, cfg_)
    assert not any(_commands(plan, r) for r in ("segment", "tile", "extract", "slide-report"))
    (manifest,) = _commands(plan, "feature-manifest")
    assert f"--features-dir {lay['pt_files']} --clinical {lay['clinical']} --declared-encoder resnet50_trunc" in manifest
    for cmd in _commands(plan, "train"):
        assert f"--features-dir {lay['pt_files']}" in cmd
        assert ("--manifest results/features/resnet50_trunc/manifest.csv" in cmd) == ("--model snn" not in cmd)
    assert "--slide-sheet" not in _commands(plan, "splits")[0]


@covers("extract.max_corrupt_fraction")
def test_corrupt_fraction_key(tmp_path):
    """extract.max_corrupt_fraction: a slide with corrupt stored tiles under a third of its patches
    keeps the rest at 0.5, and fails at the default (0.2)."""
    from conftest import CMU_SLIDE
    from test_extract import scramble_tiles

    d = tmp_path
    segment.run(str(CMU_SLIDE), "c", cfg("segment"), geojson=d / "s.geojson", qc_png=d / "s.jpg", stats_json=d / "s.json")
    tile.run(str(CMU_SLIDE), "c", cfg("tile"), contours=d / "s.geojson", coords_h5=d / "c.h5", qc_png=d / "t.jpg")
    bad = scramble_tiles(CMU_SLIDE, d / "bad.svs", [33, 34, 43, 44, 52, 53])

    def run(**ch):
        return extract.run(str(bad), "c", cfg("extract", weights="random", precision="fp32", **ch), coords_h5=d / "c.h5",
                           features_h5=d / "f.h5", device="cpu", wants_gpu=False)

    with pytest.raises(GhanetError, match="more than extract.max_corrupt_fraction 0.2"):
        run()
    assert 0 < run(max_corrupt_fraction=0.5)["dropped_patches"] < formats.read_coords(d / "c.h5")[0].shape[0]


@covers("cohort.patches")
def test_patches_key(demo_cohort, tmp_path):
    """cohort.patches: CLAM's patch files give the heatmaps the tiles' size that CLAM's feature files
    do not carry; without them, the tiling settings on the slide's resolution do."""
    import openslide

    import other_tools

    out, sheet = demo_cohort
    sid, path = sheet.slide_id[0], sheet.path[0]
    with openslide.OpenSlide(str(path)) as slide:
        other_tools.clam_patches(tmp_path / "patches" / f"{sid}.h5", np.array([[0, 0]]), slide, sid,
                                 patch_size=128, patch_level=1)
        down = slide.level_downsamples[1]

    def size(**cohort):
        part = {"slide_id": sid, "path": path, "attrs": {"format": "clam"}}
        heatmap.with_geometry(part, {"path": path, "mpp": None}, validate_config({"cohort": cohort}))
        return part["attrs"]["patch_size_level0"], part["attrs"]["target_patch_size"]

    assert size() == (256, 256)  # tile.patch_size 256 at tile.target_mpp 0.5 on a 0.5 um/px slide
    assert size(patches=str(tmp_path / "patches")) == (round(128 * down), 128)


@covers("cohort.status_column")
def test_status_column_is_declared_never_guessed(tmp_path):
    from ghanet_pipeline.cohort import load_clinical

    clinical, _ = demo.clinical_table(4, 0)
    mcat = tmp_path / "mcat.csv"
    clinical.to_csv(mcat, index=False)
    stamp = tmp_path / "stamp.csv"
    clinical.assign(event=1 - clinical.censorship).drop(columns="censorship").to_csv(stamp, index=False)
    read = load_clinical(stamp, cfg("cohort", status_column="event")["status_column"])
    assert read.censorship.tolist() == clinical.censorship.tolist()  # the same labels, either way
    assert load_clinical(mcat, cfg("cohort")["status_column"]).censorship.tolist() == clinical.censorship.tolist()
    # the other column than the one declared: an error that names both, never a silent inversion
    with pytest.raises(GhanetError, match="no `censorship` column.*it has `event`.*set cohort.status_column: event"):
        load_clinical(stamp, "censorship")
    with pytest.raises(GhanetError, match="no `event` column.*it has `censorship`.*status_column: censorship"):
        load_clinical(mcat, "event")


@covers("labels.n_bins", "labels.fit_on", "genes.alpha", "genes.correction", "genes.min_features")
def test_label_and_gene_keys(clinical):
    tmp, table = clinical
    out, _ = _splits(tmp, table, "labels")

    def select(fold=0, **sections_):
        full = validate_config(sections_)
        return genes.run(out / "patients.csv.gz", out / f"fold_{fold}.csv", tmp / "signatures.csv", full["genes"],
                         full["labels"], out_dir=tmp / "genes", fold=fold)

    def edges(**sections_):
        select(**sections_)
        return json.loads((tmp / "genes/selection.json").read_text())["bin_edges"]

    assert len(edges()) == 5 and len(edges(labels={"n_bins": 2})) == 3
    assert edges(labels={"fit_on": "cohort"}) != edges()  # the whole cohort's quartiles, not fold 0's

    def sizes(**genes_):
        select(genes=genes_)
        sel = json.loads((tmp / "genes/selection.json").read_text())
        return sum(sel["sizes"].values()), sel

    n_default, _ = sizes()
    assert sizes(alpha=0.5)[0] > n_default
    stats = pd.read_csv(tmp / "genes/stats.csv")
    assert np.allclose(stats.p_adj, stats.p)
    sizes(correction="bh")
    stats = pd.read_csv(tmp / "genes/stats.csv")
    assert (stats.p_adj >= stats.p).all() and (stats.p_adj > stats.p).any()
    _, strict = sizes(alpha=1e-12, min_features=2)
    assert strict["fallback_families"] and all(strict["sizes"][f] == 2 for f in strict["fallback_families"])


# ------------------------------------------------------------------ models and training


@covers("model.hidden_dim", "model.heads", "model.head_dim", "model.topk_ratio", "model.dropout",
        "model.share_attention")
def test_model_keys():
    def build(**ch):
        torch.manual_seed(0)
        dims = models.Dims(n_bins=4, in_dim=32, family_dims=(3, 2, 2, 2, 2, 2), omic_dim=13)
        return networks.build("ghanet", cfg("model", **ch), dims).eval()

    def n_params(m):
        return sum(p.numel() for p in m.parameters())

    base = build()
    assert n_params(build(hidden_dim=64)) < n_params(base)
    assert n_params(build(heads=2)) < n_params(base) and n_params(build(head_dim=32)) < n_params(base)
    assert n_params(build(share_attention=False)) > n_params(base)
    bag = torch.randn(100, 32)
    kept = lambda m: int((m(bag)["family_attention"][0] > 0).sum())  # noqa: E731
    assert kept(base) == 20 and kept(build(topk_ratio=0.5)) == 50
    rates = {m.p for m in build(dropout=0.5).modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.5} and {m.p for m in base.modules() if isinstance(m, torch.nn.Dropout)} == {0.25}


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    root = tmp_path_factory.mktemp("fold")
    make_fold(root)
    return root


def _train(root, out, model="abmil", fold_k=0, **train_changes):
    secs = sections(**train_changes)
    train.run(model, fold_k, patients_csv=root / "patients.csv.gz", fold_csv=root / f"fold_{fold_k}.csv",
              selection_json=root / "selection.json", scaler_csv=root / "scaler.csv",
              features_dir=root / "features", sections=secs, out_dir=out, device="cpu", threads=1)
    return pd.read_csv(out / "train_log.csv"), pd.read_csv(out / "risks.csv").set_index("case_id").risk


@covers("train.epochs", "train.lr", "train.weight_decay", "train.grad_accum", "train.recon_weight",
        "train.balanced_sampling", "train.scheduler", "train.seed", "train.inner_val_fraction",
        "train.patience")
def test_train_keys(fold, tmp_path):
    log, risk = _train(fold, tmp_path / "base")  # 3 epochs, an optimiser step every 4 patients
    assert len(log) == 3 and log.optimizer_steps.iloc[-1] == 3 * 10 // 4 and (log.lr == 2e-4).all()

    def differs(name, **ch):
        return not np.array_equal(_train(fold, tmp_path / name, **ch)[1].to_numpy(), risk.to_numpy())

    assert len(_train(fold, tmp_path / "epochs", epochs=5)[0]) == 5
    assert differs("lr", lr=1e-3) and differs("wd", weight_decay=0.5) and differs("seed", seed=5)
    assert differs("unbalanced", balanced_sampling=False)
    steps = _train(fold, tmp_path / "accum", grad_accum=1)[0]
    assert steps.optimizer_steps.iloc[-1] == 30 and differs("accum", grad_accum=1)
    cos = _train(fold, tmp_path / "cos", scheduler="cosine")[0]
    assert cos.lr.is_monotonic_decreasing and cos.lr.iloc[-1] < 2e-4
    # G-HANet's total loss is the survival NLL plus recon_weight x the reconstruction losses
    g0 = _train(fold, tmp_path / "g0", model="ghanet", recon_weight=0.0)[0]
    g1 = _train(fold, tmp_path / "g1", model="ghanet", recon_weight=1.0)[0]
    assert np.allclose(g0.loss, g0.survival_loss) and (g1.loss > g1.survival_loss).all()
    # early stopping on an inner split of the training patients, after `patience` epochs
    inner = _train(fold, tmp_path / "inner", epochs=12, inner_val_fraction=0.3, patience=1, lr=0.05)[0]
    patient = _train(fold, tmp_path / "patient", epochs=12, inner_val_fraction=0.3, patience=12, lr=0.05)[0]
    assert "inner_val_loss" in inner and "inner_val_loss" not in log
    assert len(inner) < len(patient) == 12


@covers("evaluate.risk_groups")
def test_evaluate_keys(fold, tmp_path):
    dirs = [tmp_path / "snn/fold_0"]
    _train(fold, dirs[0], model="snn")
    evaluate.run(dirs, cfg("evaluate"), out_dir=tmp_path / "median")
    evaluate.run(dirs, cfg("evaluate", risk_groups="tertiles"), out_dir=tmp_path / "tertiles")
    groups = {s: set(pd.read_csv(tmp_path / s / "oof.csv").group) for s in ("median", "tertiles")}
    # the held-out patients' groups, by cut-offs from the training patients' risks
    assert groups["median"] <= {"low", "high"} and "intermediate" in groups["tertiles"]


@covers("predict.allow_other_mpp")
def test_predict_resolution_key(fold, tmp_path):
    _train(fold, tmp_path / "m")
    ckpt = train.load_checkpoint(tmp_path / "m/model.pt")
    coarser = {"encoder": "toy", "level0_mpp": ckpt["encoder"]["target_mpp"] * 2}  # its tiles upsampled
    with pytest.raises(GhanetError, match="allow_other_mpp"):
        predict.check_slide("new", coarser, ckpt, cfg("predict")["allow_other_mpp"])
    predict.check_slide("new", coarser, ckpt, cfg("predict", allow_other_mpp=True)["allow_other_mpp"])


@covers("heatmap.mpp", "heatmap.max_side_px", "heatmap.scale", "heatmap.smooth", "heatmap.top_k")
def test_heatmap_keys(demo_cohort, tmp_path):
    from PIL import Image

    _, sheet = demo_cohort  # 2048 x 1536 px at 0.5 um/px
    path = sheet.path[0]
    ps0 = 256
    coords = np.asarray([(x, y) for y in range(256, 1280, ps0) for x in range(256, 1792, ps0)])
    rng = np.random.default_rng(0)
    maps = {"morphology": rng.dirichlet(np.ones(len(coords))), "Oncogenes": rng.dirichlet(np.ones(len(coords)))}
    attrs = {"patch_size_level0": ps0, "patch_size": 256, "patch_level": 0, "level0_mpp": 0.5, "target_mpp": 0.5}

    def drawn(name, **changes):
        settings = heatmap.Settings.of(cfg("heatmap", **changes))
        heatmap.render(path, "s", coords, attrs, maps, tmp_path / f"{name}.png", settings)
        heatmap.montage(path, "s", coords, attrs, maps, tmp_path / f"{name}.jpg", k=settings.top_k)
        return np.asarray(Image.open(tmp_path / f"{name}.png")), Image.open(tmp_path / f"{name}.jpg").size

    base, base_top = drawn("base")
    fine, _ = drawn("fine", mpp=2.0)  # two panels of 512 x 384 px instead of 256 x 192 (4 um/px)
    capped, _ = drawn("capped", mpp=2.0, max_side_px=256)  # back to 4 um/px: 2 would exceed 256 px
    assert fine.shape[1] - base.shape[1] == pytest.approx(2 * (512 - 256), abs=4)
    assert capped.shape == base.shape
    pct, _ = drawn("pct", scale="percentile")
    blocky, _ = drawn("blocky", smooth=False)
    assert pct.shape == blocky.shape == base.shape
    assert not np.array_equal(pct, base) and not np.array_equal(blocky, base)
    _, top3 = drawn("top3", top_k=3)
    assert base_top[0] - top3[0] == pytest.approx(5 * (256 + 4), abs=2)  # 8 tiles a row, then 3, full size


# ------------------------------------------------------------------ the workflow's own keys


@covers("demo.patients", "demo.seed", "demo.level0_mpp", "demo.width_px", "demo.height_px", "demo.new_patients",
        "demo.validation_patients")
def test_demo_keys(demo_cohort, tmp_path):
    _, base = demo_cohort  # 4 patients, seed 3, 2048 x 1536 px at 0.5 mpp
    sheet = demo.write_cohort(tmp_path, 5, 4, width=1024, height=1100, mpp=0.25)
    assert sheet.case_id.nunique() == 5 and list(sheet.slide_id) != list(base.slide_id)
    assert pd.read_csv(tmp_path / "clinical.csv").case_id.nunique() == 5
    with openslide.OpenSlide(sheet.path[0]) as s:
        assert s.dimensions == (1024, 1100) and float(s.properties[openslide.PROPERTY_NAME_MPP_X]) == 0.25
    # new patients: slides and a sheet only; their truth beside them, read by no rule
    new = demo.write_new_patients(tmp_path / "new", 2, 4, width=1024, height=1100, mpp=0.25)
    assert list(new.case_id) == ["NEW-000", "NEW-001"] and set(new.columns) == {"slide_id", "case_id", "path"}
    truth = pd.read_csv(tmp_path / "new/new_patients_truth.csv")
    assert list(truth.case_id) == list(new.case_id) and "true_log_hazard" in truth
    assert np.allclose(truth.filter(like="_fraction").sum(axis=1), 1, atol=1e-3)
    # a held-out labelled cohort: slides, a sheet and outcomes, no omics, no patient of the cohort
    val = demo.write_validation(tmp_path / "val", 2, 4, width=1024, height=1100, mpp=0.25)
    outcomes = pd.read_csv(tmp_path / "val/validation_clinical.csv")
    assert list(val.case_id) == list(outcomes.case_id) == ["VAL-000", "VAL-001"]
    assert list(outcomes.columns) == ["case_id", "slide_id", "survival_months", "censorship"]


def _plan(work, config) -> str:
    """A dry run's jobs and shell commands."""
    proc = snakemake(work, "-n", "-p", configfile=write_config(work / "config.yaml", config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _commands(plan: str, rule: str) -> list[str]:
    return [line for line in plan.splitlines() if f"-m ghanet_pipeline {rule} " in line]


@covers("slides_per_job", "results_dir", "demo.patients", "demo.seed", "demo.level0_mpp", "demo.width_px", "demo.height_px",
        "extract.write_pt", "train.models", "evaluate.heatmaps", "cohort.default_mpp", "predict.slide_sheet",
        "predict.model", "predict.heatmaps", "cohort.slide_sheet", "cohort.clinical", "cohort.signatures",
        "evaluate.heatmap_model")
def test_workflow_keys(tmp_path):
    """What the Snakefile makes of its keys: which jobs, which files, which arguments (dry runs)."""
    new = tmp_path / "new.csv"
    pd.DataFrame({"slide_id": ["NEW-1"], "case_id": ["NEW"], "path": [str(CMU_SLIDE)]}).to_csv(new, index=False)
    (tmp_path / "a").mkdir()
    base = _plan(tmp_path / "a", TINY_DEMO)
    assert "pt_files" not in base and "rule heatmaps" not in base
    # without a predict sheet the demo scores its own new patient, drawn by a job of its own
    assert _commands(base, "demo-new-patients")[0].count("--patients 1 --seed 6 --width 1536")
    (pcmd,) = _commands(base, "predict")
    assert "--slide-sheet results/demo/new_patients.csv" in pcmd and "--heatmaps-dir" in pcmd
    assert "NEW-000-S1" in {c.split("--slide-id ")[1].split()[0] for c in _commands(base, "extract")}
    assert _commands(base, "demo-cohort")[0].count("--patients 6 --seed 6 --width 1536 --height 1024 --mpp 0.5")
    assert not any("--default-mpp" in c for c in _commands(base, "segment"))
    assert {c.split("--model ")[1].split()[0] for c in _commands(base, "train")} == {"ghanet", "abmil", "snn"}
    # slides_per_job: the 7 cohort slides in jobs of 4, the new patient's and the 3 held out in jobs of 4
    (tmp_path / "chunks").mkdir()
    chunked = _plan(tmp_path / "chunks", dict(TINY_DEMO, slides_per_job=4))
    assert sorted(c.count('"slide_id"') for c in _commands(chunked, "extract")) == [3, 4, 4]
    assert "--slide-id" not in chunked

    (tmp_path / "b").mkdir()
    changed = dict(TINY_DEMO, results_dir="out", demo=dict(patients=5, seed=4, level0_mpp=0.25, width_px=1100,
                                                           height_px=1200, validation_patients=2),
                   extract={"write_pt": True}, train=dict(TINY_DEMO["train"], models=["ghanet", "abmil"]),
                   evaluate={"heatmaps": True, "heatmap_model": "abmil"}, cohort={"default_mpp": 0.5},
                   predict={"slide_sheet": str(new)})
    plan = _plan(tmp_path / "b", changed)
    assert "results/" not in plan and "out/features/" in plan
    assert "rule demo_new_patients" not in plan  # a predict sheet replaces the demo's new patients
    assert "--patients 5 --seed 4 --width 1100 --height 1200 --mpp 0.25" in _commands(plan, "demo-cohort")[0]
    slides = {s.slide_id for s in demo.plan(5, 4)} | {"NEW-1", "VAL-000-S1", "VAL-001-S1"}  # and the 2 held out
    assert {c.split("--slide-id ")[1].split()[0] for c in _commands(plan, "segment")} == slides
    assert all("--default-mpp 0.5" in c for c in _commands(plan, "segment"))
    assert len(_commands(plan, "extract")) == len(slides) == len(_commands(plan, "export-pt"))
    assert {c.split("--model ")[1].split()[0] for c in _commands(plan, "train")} == {"ghanet", "abmil"}
    assert "rule heatmaps" in plan
    assert all("--model out/models/abmil/fold_" in c for c in _commands(plan, "heatmaps"))  # its attention
    (pcmd,) = _commands(plan, "predict")
    assert "--models-dir out/models/ghanet" in pcmd and "--heatmaps-dir" in pcmd and str(new) in pcmd

    # another cohort, another model to predict with, no prediction heatmaps
    (tmp_path / "c").mkdir()
    clinical, signatures = demo.clinical_table(4, 0)
    clinical.to_csv(tmp_path / "clin.csv", index=False)
    signatures.to_csv(tmp_path / "sig.csv", index=False)
    sheet = tmp_path / "cohort.csv"
    pd.DataFrame({"slide_id": clinical.slide_id, "case_id": clinical.case_id, "path": str(CMU_SLIDE)}
                 ).to_csv(sheet, index=False)
    other = dict(TINY_DEMO, cohort={"slide_sheet": str(sheet), "clinical": str(tmp_path / "clin.csv"),
                                    "signatures": str(tmp_path / "sig.csv")},
                 predict={"slide_sheet": str(new), "model": "abmil", "heatmaps": False})
    plan = _plan(tmp_path / "c", other)
    assert "rule demo_cohort" not in plan
    segmented = {c.split("--slide-id ")[1].split()[0] for c in _commands(plan, "segment")}
    assert segmented == set(clinical.slide_id) | {"NEW-1"}
    assert str(tmp_path / "clin.csv") in _commands(plan, "splits")[0]
    assert all(str(tmp_path / "sig.csv") in c for c in _commands(plan, "genes"))
    (pcmd,) = _commands(plan, "predict")
    assert "--models-dir results/models/abmil" in pcmd and "--heatmaps-dir" not in pcmd
