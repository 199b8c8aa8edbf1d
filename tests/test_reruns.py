"""Exact reruns: for every key of the schema, which jobs an edit reruns in a finished tiny demo
(dry runs), held in one table; runtime knobs rerun nothing; --config overrides are typed by the
schema, and every schema error is reported at once."""

import copy
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from conftest import TINY_DEMO, job_counts, snakemake, write_config
from ghanet_pipeline.config import load_schema
from ghanet_pipeline.demo_plan import plan
from test_config_keys import _leaves

COHORT_SLIDES = len(plan(TINY_DEMO["demo"]["patients"], TINY_DEMO["demo"]["seed"]))  # 7
NEW = "results/demo/slides/DEMO-000-S1.tiff"  # a new patient's slide (a copy of a demo slide's file)
BASE = dict(TINY_DEMO, predict={"slide_sheet": "new.csv"})

HELD_OUT = TINY_DEMO["demo"]["validation_patients"]  # the demo's validation cohort: 3 patients, a slide each
SLIDES = COHORT_SLIDES + 1 + HELD_OUT

# what consumes each stage's outputs, as job counts: 7 cohort slides + 1 new + 3 held out, 2 folds,
# 3 models, of which 2 (G-HANet and ABMIL) score slides alone and are validated
AFTER_TRAIN = {"evaluate": 1, "predict": 1}
VALIDATED = {"validation_score": 2, "validate": 1}
ALL_MODELS = {"train": 6, **AFTER_TRAIN, **VALIDATED}
SLIDE_MODELS = {"train": 4, **AFTER_TRAIN, **VALIDATED}  # G-HANet and ABMIL; the SNN reads no slide
GHANET = {"train": 2, **AFTER_TRAIN, "validation_score": 1, "validate": 1}  # G-HANet's keys alone
FROM_EXTRACT = {"extract": SLIDES, "feature_manifest": 1, "slide_report": 1, **SLIDE_MODELS}  # the report: dropped patches
FROM_TILE = {"tile": SLIDES, "slide_report": 1, **FROM_EXTRACT}
FROM_SEGMENT = {"segment": SLIDES, **FROM_TILE}
FROM_GENES = {"genes": 2, **ALL_MODELS}
FROM_SPLITS = {"splits": 1, **FROM_GENES}


def _everything(slides, held_out=True):
    """Every job; `held_out`: the held-out cohort is drawn again too (else its slides stay as they are)."""
    n = slides + 1 + (HELD_OUT if held_out else 0)
    return {"demo_cohort": 1, **({"demo_validation": 1} if held_out else {}), "segment": n, "tile": n, "extract": n,
            "slide_report": 1, "feature_manifest": 1, **FROM_SPLITS}


NOTHING: dict = {}
# key (or keys changed together) -> (new value(s), the jobs a dry run of the finished demo plans)
TABLE = {
    "results_dir": ("out", _everything(COHORT_SLIDES)),
    # chunk jobs instead of a job per slide (7 cohort slides in 3, the 4 scored in 2): each finds
    # its slides up to date by their stamps; the manifest and the slide report are read from the
    # chunks' tables, so they and what follows the manifest run again (the slides do not)
    "slides_per_job": (3, {"segment_chunk": 5, "tile_chunk": 5, "extract_chunk": 5, "slide_report": 1,
                           "feature_manifest": 1, **SLIDE_MODELS}),
    "cohort.slide_sheet, cohort.clinical, cohort.signatures":  # the demo's own files, copied
        (("copies/slides.csv", "copies/clinical.csv", "copies/signatures.csv"),
         # the slide table carries the sheet's columns; the manifest reads its slide list from the sheet;
         # a cohort of one's own has no demo held-out cohort to validate on
         {"slide_report": 1, "feature_manifest": 1, **{k: n for k, n in FROM_SPLITS.items() if k not in VALIDATED}}),
    # the finished run's own features, given as a cohort's: nothing is extracted or trained again;
    # the slide table now covers the new patient's slide alone
    "cohort.features, cohort.slide_sheet, cohort.clinical, cohort.signatures":
        (("results/features/efficientnet_lite0", "results/demo/slides.csv", "results/demo/clinical.csv",
          "results/demo/signatures.csv"), {"slide_report": 1}),
    "cohort.default_mpp": (0.25, NOTHING),  # every slide has mpp in its file
    "cohort.patches": ("patches", NOTHING),  # read only for heatmaps of another tool's features
    "cohort.on_problem": ("exclude", NOTHING),
    "cohort.status_column": ("event", FROM_SPLITS),  # the labels are read anew
    "cohort.mpp_range": ([0.2, 5.0], FROM_SEGMENT),
    "cohort.on_slide_error": ("skip", NOTHING),  # decides only whether a bad slide stops the run
    "cohort.max_lost_fraction": (0.5, NOTHING),  # decides only whether a problem stops the run
    "demo.patients": (7, _everything(len(plan(7, 6)), held_out=False)),
    "demo.seed": (2, _everything(len(plan(6, 2)))),
    "demo.level0_mpp": (0.25, _everything(COHORT_SLIDES)),
    "demo.width_px": (1600, _everything(COHORT_SLIDES)),
    "demo.height_px": (1100, _everything(COHORT_SLIDES)),
    "demo.new_patients": (2, NOTHING),  # scored only where no predict sheet is given (BASE gives one)
    "demo.validation_patients": (2, {"demo_validation": 1, "segment": 2, "tile": 2, "extract": 2, "slide_report": 1,
                                     **VALIDATED}),
    "segment.seg_mpp": (16.0, FROM_SEGMENT),
    "segment.saturation_threshold": (30, FROM_SEGMENT),
    "segment.min_tissue_area_mm2": (0.05, FROM_SEGMENT),
    "segment.min_hole_area_mm2": (0.01, FROM_SEGMENT),
    "segment.smoothing_um": (16.0, FROM_SEGMENT),
    "segment.remove_pen": (False, FROM_SEGMENT),
    "tile.target_mpp": (1.0, FROM_TILE),
    "tile.patch_size": (224, FROM_TILE),
    "tile.mpp_tolerance": (0.1, FROM_TILE),
    "tile.min_coverage": (0.6, FROM_TILE),
    "tile.max_ink_fraction": (0.2, FROM_TILE),
    "tile.on_empty": ("record", NOTHING),  # decides only whether an empty slide stops the run
    "extract.encoder": ("timm:resnet18", FROM_EXTRACT),  # into its own folder, on the same 256 px tiles
    # a foundation model trained on 224 px at 20x: the tiles follow it (tile.patch_size left to the encoder)
    "extract.encoder, tile.patch_size": (("virchow2", None), FROM_TILE),
    "extract.weights": ("random", FROM_EXTRACT),
    "extract.max_corrupt_fraction": (0.5, NOTHING),  # decides only whether a damaged slide stops the run
    "extract.precision": ("fp32", FROM_EXTRACT),
    "extract.channels_last": (False, FROM_EXTRACT),
    "extract.write_pt": (True, {"export_pt": SLIDES}),  # converted from the HDF5: adds jobs only
    "labels.n_bins": (3, FROM_SPLITS),  # folds are stratified by time bin
    "labels.fit_on": ("cohort", FROM_GENES),
    "splits.folds": (3, {"splits": 1, "genes": 3, "train": 9, **AFTER_TRAIN, **VALIDATED}),
    "splits.seed": (1, FROM_SPLITS),
    "splits.split_dir": ("given", FROM_SPLITS),
    "genes.alpha": (0.1, FROM_GENES),
    "genes.correction": ("bh", FROM_GENES),
    "genes.min_features": (3, FROM_GENES),
    "model.hidden_dim": (256, SLIDE_MODELS),  # sizes G-HANet and ABMIL
    "model.heads": (2, GHANET),  # G-HANet only
    "model.head_dim": (64, GHANET),
    "model.topk_ratio": (0.5, GHANET),
    "model.dropout": (0.1, ALL_MODELS),  # every model
    "model.share_attention": (False, GHANET),
    "train.models": (["ghanet", "abmil"], {"evaluate": 1}),  # drops the SNN, retrains nothing
    "train.epochs": (3, ALL_MODELS),
    "train.lr": (0.001, ALL_MODELS),
    "train.weight_decay": (0.0001, ALL_MODELS),
    "train.grad_accum": (2, ALL_MODELS),
    "train.recon_weight": (0.5, GHANET),  # G-HANet's loss only
    "train.balanced_sampling": (False, ALL_MODELS),
    "train.scheduler": ("cosine", ALL_MODELS),
    "train.seed": (2, ALL_MODELS),
    "train.inner_val_fraction": (0.3, ALL_MODELS),
    "train.patience": (3, NOTHING),  # no early stopping without an inner split
    "evaluate.risk_groups": ("tertiles", {**AFTER_TRAIN, **VALIDATED}),
    "evaluate.heatmaps": (True, {"heatmaps": 2}),
    "evaluate.heatmap_model": ("abmil", NOTHING),  # held-out heatmaps are off here: nothing to redraw
    "predict.slide_sheet": ("new2.csv", {"segment": 1, "tile": 1, "extract": 1, "slide_report": 1, "predict": 1}),
    "predict.model": ("abmil", {"predict": 1}),
    "predict.allow_other_mpp": (True, {"predict": 1, **VALIDATED}),  # the held-out cohort is scored as predict scores
    "predict.heatmaps": (False, NOTHING),  # the predictions do not depend on drawing heatmaps
    "heatmap.mpp": (2.0, {"predict": 1}),  # the new patients' heatmaps are redrawn (evaluate.heatmaps is off)
    "heatmap.max_side_px": (1024, {"predict": 1}),
    "heatmap.scale": ("percentile", {"predict": 1}),
    "heatmap.smooth": (False, {"predict": 1}),
    "heatmap.top_k": (4, {"predict": 1}),
    # the held-out cohort's own files, copied: scored and evaluated again, its slides unchanged
    "validation.slide_sheet, validation.clinical": (("copies/validation.csv", "copies/validation_clinical.csv"),
                                                    {"slide_report": 1, **VALIDATED}),
    # its features, given (the very files scored before, which stand): none of its slides is
    # processed (the slide table drops them); the evaluation reads the copied outcomes
    "validation.features, validation.clinical": (("results/features/efficientnet_lite0", "copies/validation_clinical.csv"),
                                                 {"slide_report": 1, "validate": 1}),
    "validation.status_column": ("censorship", {"validate": 1}),  # empty was cohort.status_column's
    "validation.calibration_months": (6.0, VALIDATED),
}


def _with(config, keys, values):
    cfg = copy.deepcopy(config)
    for key, value in zip(keys, values):
        if "." not in key:
            cfg[key] = value
            continue
        section, name = key.split(".")
        cfg.setdefault(section, {})[name] = value
    return cfg


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    """A copy of the finished tiny demo that has also scored a new patient."""
    work = tmp_path_factory.mktemp("reruns") / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    pd.DataFrame({"slide_id": ["NEW-1"], "case_id": ["NEW"], "path": [NEW]}).to_csv(work / "new.csv", index=False)
    pd.DataFrame({"slide_id": ["NEW-1", "NEW-2"], "case_id": ["NEW", "NEW2"], "path": [NEW, NEW]}).to_csv(
        work / "new2.csv", index=False)
    (work / "copies").mkdir()
    for name in ("clinical.csv", "signatures.csv"):
        shutil.copy(work / "results/demo" / name, work / "copies" / name)
    sheet = pd.read_csv(work / "results/demo/slides.csv")  # paths are relative to the sheet's folder
    sheet.assign(path="../results/demo/" + sheet.path).to_csv(work / "copies/slides.csv", index=False)
    held_out = pd.read_csv(work / "results/demo/validation.csv")
    held_out.assign(path="../results/demo/" + held_out.path).to_csv(work / "copies/validation.csv", index=False)
    shutil.copy(work / "results/demo/validation_clinical.csv", work / "copies/validation_clinical.csv")
    risks = pd.read_csv(work / "results/models/snn/fold_0/risks.csv")
    val = list(risks.case_id[risks.split == "val"])
    train = list(risks.case_id[risks.split == "train"])
    (work / "given").mkdir()
    for k, (tr, va) in enumerate([(train, val), (val, train)]):
        pd.DataFrame({"train": pd.Series(tr), "val": pd.Series(va)}).to_csv(work / f"given/splits_{k}.csv")
    proc = snakemake(work, configfile=write_config(work / "config.yaml", BASE))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def _plan(work, cfg, *args, name="edited.yaml"):
    proc = snakemake(work, "-n", *args, configfile=write_config(work / name, cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_the_table_names_every_schema_key():
    keys = {k for row in TABLE for k in row.split(", ")}
    assert keys == set(_leaves(load_schema("config")))


@pytest.mark.slow
def test_each_key_reruns_what_its_table_row_says(finished):
    assert "Nothing to be done" in _plan(finished, BASE)

    def plan(i_row):
        i, (row, (values, _)) = i_row
        keys = row.split(", ")
        return _plan(finished, _with(BASE, keys, values if len(keys) > 1 else (values,)), name=f"edited_{i}.yaml")

    # dry runs read the finished run and write nothing: two at a time, one per core
    with ThreadPoolExecutor(2) as pool:
        outs = dict(zip(TABLE, pool.map(plan, enumerate(TABLE.items()))))
    seen, long_reasons = {}, []
    for row, out in outs.items():
        seen[row] = {rule: n for rule, n in job_counts(out).items() if rule != "all"}
        long_reasons += [line.strip() for line in out.splitlines()
                         if "reason: Params have changed" in line and len(line.split("across all output: ")[1]) > 120]
    wrong = {row: (seen[row], want) for row, (_, want) in TABLE.items() if seen[row] != want}
    assert not wrong, "\n".join(f"{row}: reruns {got}, the table says {want}" for row, (got, want) in wrong.items())
    # a params change's reason names the key, in one short line
    assert not long_reasons, long_reasons[:3]


@pytest.mark.slow
def test_runtime_knobs_rerun_nothing(finished):
    out = _plan(finished, BASE, "--set-resources", "extract:batch_size=8", "extract:loader_workers=2",
                "extract:slide_reader=openslide",
                "train:device=cpu", "extract:device=cpu", "--set-threads", "extract=1", "train=2",
                "--resources", "gpu=2")
    assert "Nothing to be done" in out


@pytest.mark.slow
def test_config_overrides_are_typed_by_the_schema(finished):
    out = _plan(finished, BASE, "--config", "train={epochs: 3, lr: 1e-3, balanced_sampling: false}",
                "extract={write_pt: true}", "cohort={default_mpp: null}")
    assert {k: v for k, v in job_counts(out).items() if k != "all"} == {**ALL_MODELS, "export_pt": SLIDES}
    assert "train.epochs=3" in out and "train.lr=0.001" in out and "train.balanced_sampling=false" in out


def test_every_schema_error_is_reported_at_once(tmp_path):
    proc = snakemake(tmp_path, "-n", "--config", "train={epochs: five, lr: -1}", "tilling={patch_size: 128}",
                     configfile=write_config(tmp_path / "config.yaml", TINY_DEMO))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "3 problems" in out and "unknown key(s) 'tilling'" in out
    assert re.search(r"train\.epochs: 'five' is not of type 'integer'", out) and "train.lr: -1" in out
