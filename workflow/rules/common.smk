# Helpers shared by the stage files: the slide list, per-slide inputs, and params from config sections.
import json
import re
from pathlib import Path

from ghanet_pipeline import demo
from ghanet_pipeline.report import read_failures
from ghanet_pipeline.sheet import read_slide_sheet

RESULTS = config["results_dir"]
DEMO_DIR = f"{RESULTS}/demo"
USE_DEMO = not config["cohort"]["slide_sheet"]
# one folder per encoder, so features of several encoders can live side by side
ENCODER_TAG = re.sub(r"[^\w.-]", "-", config["extract"]["encoder"])
FEATURES_DIR = f"{RESULTS}/features/{ENCODER_TAG}"
COHORT_DIR = f"{RESULTS}/cohort"
MODELS_DIR = f"{RESULTS}/models"
EVAL_DIR = f"{RESULTS}/evaluate"
MODELS = config["train"]["models"]
FOLDS = list(range(config["splits"]["folds"]))
SHEET = f"{DEMO_DIR}/slides.csv" if USE_DEMO else config["cohort"]["slide_sheet"]
CLINICAL = f"{DEMO_DIR}/clinical.csv" if USE_DEMO else config["cohort"]["clinical"]
SIGNATURES = f"{DEMO_DIR}/signatures.csv" if USE_DEMO else config["cohort"]["signatures"]
# without a clinical table and signatures the run does the slide work only (segment, tile, extract)
HAS_GENOMICS = bool(CLINICAL and SIGNATURES)


def _slides():
    """slide_id -> {path, mpp}; known before any job runs (the demo's plan needs no drawing)."""
    if USE_DEMO:
        d = config["demo"]
        return {
            s.slide_id: {"path": f"{DEMO_DIR}/slides/{s.slide_id}.tiff", "mpp": None, "case_id": s.case_id}
            for s in demo.plan(d["patients"], d["seed"])
        }
    sheet = read_slide_sheet(config["cohort"]["slide_sheet"])
    return {
        sid: {"path": row["path"], "case_id": row["case_id"],
              "mpp": None if row["mpp"] != row["mpp"] else float(row["mpp"])}
        for sid, row in sheet.iterrows()
    }


def _predict_slides(cohort):
    """Slides of the patients to score (predict.slide_sheet); they share the slide rules."""
    if not config["predict"]["slide_sheet"]:
        return {}
    sheet = read_slide_sheet(config["predict"]["slide_sheet"])
    slides = {}
    for sid, row in sheet.iterrows():
        if sid in cohort and cohort[sid]["path"] != row["path"]:
            raise ValueError(f"predict sheet: slide id {sid} is also a training slide with another path; "
                             "rename it in the predict sheet")
        slides[sid] = {"path": row["path"], "case_id": row["case_id"],
                       "mpp": None if row["mpp"] != row["mpp"] else float(row["mpp"])}
    return slides


COHORT_SLIDES = _slides()
PREDICT_SLIDES = _predict_slides(COHORT_SLIDES)
SLIDES = {**COHORT_SLIDES, **PREDICT_SLIDES}
PREDICT_DIR = f"{RESULTS}/predict"




def slide_path(wildcards):
    return SLIDES[wildcards.slide]["path"]


def slide_input(wildcards):
    """The slide as an input when it exists (or the demo will make it). A missing file is not an
    input, so the DAG still builds and only that slide's job fails, with a message naming it."""
    path = SLIDES[wildcards.slide]["path"]
    demo_slide = USE_DEMO and wildcards.slide in COHORT_SLIDES
    return [path] if demo_slide or Path(path).exists() else []


def section_json(name):
    """A config section as one JSON string: passed through params, so editing it reruns the stage."""
    return json.dumps(config[name], sort_keys=True)


def sections_json(**sections):
    """Several sections (or parts of one) as {section: {...}} JSON, for stages that read several."""
    return json.dumps(sections, sort_keys=True)


def mpp_args(wildcards):
    """--mpp / --default-mpp for slides whose resolution comes from the sheet or the config."""
    args = []
    if SLIDES[wildcards.slide]["mpp"] is not None:
        args += ["--mpp", str(SLIDES[wildcards.slide]["mpp"])]
    if config["cohort"]["default_mpp"] is not None:
        args += ["--default-mpp", str(config["cohort"]["default_mpp"])]
    return " ".join(args)


def tile_section(wildcards):
    tile = dict(config["tile"])
    if wildcards.slide not in COHORT_SLIDES:
        tile["on_empty"] = "record"  # a patient to score without tissue gets a reason, not a failed run
    return json.dumps(tile, sort_keys=True)


def train_features(wildcards):
    """Every slide's features for the slide models; the SNN reads only genomics."""
    return [] if wildcards.model == "snn" else [f"{FEATURES_DIR}/manifest.csv"]


FAILURES_CSV = f"{RESULTS}/report/failures.csv"


def write_failures():
    from ghanet_pipeline.report import failure_summary

    table = failure_summary(RESULTS, FAILURES_CSV, slides=SLIDES)
    for row in table.itertuples():
        print(f"{row.status}: {row.stage} {row.item}: {row.reason}")


# The report's Failures section (workflow/report/workflow.rst) renders the last run's failure
# summary; the report's template sees only the config, and this key is set after validation.
config["_failures"] = read_failures(FAILURES_CSV)


def all_targets():
    # the slide report needs every slide segmented and tiled, the manifest every cohort slide's
    # features: two targets instead of four per slide keep the DAG quick to build
    targets = [f"{RESULTS}/report/slides.csv", f"{FEATURES_DIR}/manifest.csv"]
    targets += [f"{FEATURES_DIR}/{sid}.h5" for sid in PREDICT_SLIDES]
    if HAS_GENOMICS:
        targets += [f"{RESULTS}/genes/fold_{k}/selection.json" for k in FOLDS]
        targets += [f"{EVAL_DIR}/comparison.csv", f"{EVAL_DIR}/km.png"]
        if "ghanet" in MODELS and config["evaluate"]["heatmaps"]:
            targets += [f"{RESULTS}/heatmaps/fold_{k}" for k in FOLDS]
    if PREDICT_SLIDES:
        targets.append(f"{PREDICT_DIR}/predictions.csv")
    return targets
