# Helpers shared by the stage files: the slide list, per-slide inputs, and params from config sections.
# This runs in the user's Snakemake environment: standard library, Snakemake's own dependencies and
# the package's light modules only (demo_plan, sheet, config, failures), never numpy or pandas.
import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

from ghanet_pipeline.demo_plan import SLIDES_PER_JOB as DEMO_SLIDES_PER_JOB
from ghanet_pipeline.demo_plan import plan as demo_plan
from ghanet_pipeline.demo_plan import plan_new as demo_plan_new
from ghanet_pipeline.demo_plan import plan_validation as demo_plan_validation
from ghanet_pipeline.failures import failure_summary, job_warnings, read_failures
from ghanet_pipeline.layouts import find_feature_file
from ghanet_pipeline.models.registry import REGISTRY
from ghanet_pipeline.models.registry import chosen as chosen_models
from ghanet_pipeline.sheet import read_slides, slides_from_clinical, table_header
from ghanet_pipeline.stamps import stamp_path

RESULTS = config["results_dir"]
DEMO_DIR = f"{RESULTS}/demo"
# a folder of feature files the cohort already has: the run starts at the cohort stages
FEATURES_IN = config["cohort"]["features"]
USE_DEMO = not config["cohort"]["slide_sheet"] and not FEATURES_IN
# one folder per encoder, so features of several encoders can live side by side
ENCODER_TAG = re.sub(r"[^\w.-]", "-", config["extract"]["encoder"])
FEATURES_DIR = f"{RESULTS}/features/{ENCODER_TAG}"  # ours: extracted here, and the manifest
COHORT_FEATURES_DIR = FEATURES_IN or FEATURES_DIR  # where the training cohort's feature files are
COHORT_DIR = f"{RESULTS}/cohort"
MODELS_DIR = f"{RESULTS}/models"
EVAL_DIR = f"{RESULTS}/evaluate"
# set names (slide-only, all) -> registry names; empty: slide-only, or the demo's three for the demo
MODELS = chosen_models(config["train"]["models"], demo=USE_DEMO)
FOLDS = list(range(config["splits"]["folds"]))
SHEET = f"{DEMO_DIR}/slides.csv" if USE_DEMO else config["cohort"]["slide_sheet"]  # none: features without slides
CLINICAL = f"{DEMO_DIR}/clinical.csv" if USE_DEMO else config["cohort"]["clinical"]
SIGNATURES = f"{DEMO_DIR}/signatures.csv" if USE_DEMO else config["cohort"]["signatures"]


def _has_omics(path):
    """Whether the clinical table's header has omic columns (<GENE>_rnaseq/_cnv/_mut). A table not
    there yet counts as having them (the demo's is written by its first job; a missing one fails in
    the splits job, with its name)."""
    header = table_header(path)
    return header is None or any(c.endswith(("_rnaseq", "_cnv", "_mut")) for c in header)


# without a clinical table the run does the slide work only (segment, tile, extract); with outcomes
# but no omics (no signatures, or none of the table's columns) it is survival-only: slide models only
HAS_OUTCOMES = bool(CLINICAL)
HAS_GENOMICS = HAS_OUTCOMES and bool(SIGNATURES) and _has_omics(CLINICAL)
if HAS_OUTCOMES and not HAS_GENOMICS:
    # a set (slide-only, all) takes what this cohort can train; a model named by itself must train
    needs = [m for m in MODELS if REGISTRY[m].needs_omics]
    named = [m for m in config["train"]["models"] or [] if m in needs]
    why = "no cohort.signatures" if not SIGNATURES else f"no omic columns in {CLINICAL}"
    if named:
        raise ValueError(f"train.models lists {', '.join(named)}, which need omics, and this cohort has none "
                         f"({why}); set train.models: [slide-only] or add the omics")
    if needs:
        print(f"survival-only cohort ({why}): training the models that need no omics; skipped: {', '.join(needs)}",
              file=sys.stderr)
    MODELS = [m for m in MODELS if m not in needs]
GENES_SIGNATURES = SIGNATURES if HAS_GENOMICS else None  # none: the genes job writes the time bins only
# the model that scores new patients: the configured one, else (a survival-only cohort has no
# G-HANet) the first trained model that scores slides alone
PREDICT_MODEL = (config["predict"]["model"] if config["predict"]["model"] in MODELS
                 else next((m for m in MODELS if REGISTRY[m].predicts), None))
# heatmaps need patch attention: TransMIL and DeepSets give none
PREDICT_HEATMAPS = config["predict"]["heatmaps"] and bool(PREDICT_MODEL) and REGISTRY[PREDICT_MODEL].attention
if config["predict"]["heatmaps"] and PREDICT_MODEL and not PREDICT_HEATMAPS:
    print(f"predict heatmaps skipped: {PREDICT_MODEL} gives no patch attention (predict.model: a model with "
          "attention, e.g. ghanet or abmil, draws them)", file=sys.stderr)


def _slides():
    """slide_id -> {path, mpp}; known before any job runs (the demo's plan needs no drawing).
    Features given without a sheet: the clinical table's slides, without paths."""
    if USE_DEMO:
        d = config["demo"]
        return {
            s.slide_id: {"path": f"{DEMO_DIR}/slides/{s.slide_id}.tiff", "mpp": None, "case_id": s.case_id}
            for s in demo_plan(d["patients"], d["seed"])
        }
    if not SHEET:
        if not CLINICAL:
            raise ValueError("cohort.features without cohort.slide_sheet needs cohort.clinical, whose slide_id "
                             "column names the slides; set one of them")
        return slides_from_clinical(CLINICAL)
    return read_slides(SHEET)



def demo_args(patients):
    """The demo generator's arguments for `patients` patients (rules demo_cohort, demo_new_patients)."""
    return "--patients {} --seed {seed} --width {width_px} --height {height_px} --mpp {level0_mpp}".format(
        patients, **config["demo"])

# the patients to score: predict.slide_sheet, or the demo's new patients when the demo runs without one
PREDICT_SHEET = config["predict"]["slide_sheet"] or (f"{DEMO_DIR}/new_patients.csv" if USE_DEMO else None)
DEMO_NEW = USE_DEMO and not config["predict"]["slide_sheet"]


def _predict_slides(cohort):
    """Slides of the patients to score; they share the slide rules."""
    if DEMO_NEW:
        return {s.slide_id: {"path": f"{DEMO_DIR}/slides/{s.slide_id}.tiff", "mpp": None, "case_id": s.case_id}
                for s in demo_plan_new(config["demo"]["new_patients"])}
    if not PREDICT_SHEET:
        return {}
    slides = read_slides(PREDICT_SHEET)
    for sid, row in slides.items():
        if sid in cohort and cohort[sid]["path"] != row["path"]:
            raise ValueError(f"predict sheet: slide id {sid} is also a training slide with another path; "
                             "rename it in the predict sheet")
    return slides


# the external validation cohort: validation.slide_sheet or .features, else the demo's held-out one
VALIDATION_FEATURES_IN = config["validation"]["features"]  # its feature files, where it is given as features
_VALIDATION_GIVEN = bool(config["validation"]["slide_sheet"] or VALIDATION_FEATURES_IN)
DEMO_VALIDATION = USE_DEMO and not _VALIDATION_GIVEN and config["demo"]["validation_patients"] > 0
VALIDATION_SHEET = f"{DEMO_DIR}/validation.csv" if DEMO_VALIDATION else config["validation"]["slide_sheet"]
VALIDATION_CLINICAL = f"{DEMO_DIR}/validation_clinical.csv" if DEMO_VALIDATION else config["validation"]["clinical"]
VALIDATION_DIR = f"{RESULTS}/validation"
if _VALIDATION_GIVEN and not VALIDATION_CLINICAL:
    raise ValueError("validation: a cohort without outcomes cannot be validated on; set validation.clinical to its "
                     "table of case_id, survival_months and status (or score it with predict.slide_sheet)")


def _validation_slides(cohort):
    """The validation cohort's slides: its sheet's, or (features without a sheet) the clinical
    table's; none of its patients may be a training patient (by case_id)."""
    if DEMO_VALIDATION:
        return {s.slide_id: {"path": f"{DEMO_DIR}/slides/{s.slide_id}.tiff", "mpp": None, "case_id": s.case_id}
                for s in demo_plan_validation(config["demo"]["validation_patients"])}
    if not _VALIDATION_GIVEN:
        return {}
    slides = read_slides(VALIDATION_SHEET) if VALIDATION_SHEET else slides_from_clinical(VALIDATION_CLINICAL)
    trained = {row["case_id"] for row in cohort.values()}
    both = sorted(trained & {row["case_id"] for row in slides.values()})
    if both:
        shown = ", ".join(both[:10]) + (f" and {len(both) - 10} more" if len(both) > 10 else "")
        raise ValueError(f"validation cohort: {len(both)} patient(s) are also in the training cohort ({shown}); an "
                         "external validation is on patients the models never saw: remove them from the validation "
                         "cohort")
    for sid, row in slides.items():
        if sid in cohort and cohort[sid]["path"] != row["path"]:
            raise ValueError(f"validation sheet: slide id {sid} is also a training slide with another path; "
                             "rename it in the validation sheet")
    return slides


COHORT_SLIDES = _slides()
PREDICT_SLIDES = _predict_slides(COHORT_SLIDES)
VALIDATION_SLIDES = _validation_slides(COHORT_SLIDES)
# slides scored by the trained models: new patients', and the validation cohort's unless given as features
SCORED_SLIDES = {**PREDICT_SLIDES, **({} if VALIDATION_FEATURES_IN else VALIDATION_SLIDES)}
# the slides this run segments, tiles and extracts: a cohort given as features has its own
SLIDES = {**({} if FEATURES_IN else COHORT_SLIDES), **SCORED_SLIDES}
PREDICT_DIR = f"{RESULTS}/predict"


def slide_path(wildcards):
    return SLIDES[wildcards.slide]["path"]


def _slide_file(sid):
    """The slide as an input when it exists (or the demo will make it). A missing file is not an
    input, so the DAG still builds and only that slide's job fails, with a message naming it."""
    path = SLIDES[sid]["path"]
    demo_slide = USE_DEMO and (sid in COHORT_SLIDES or DEMO_NEW and sid in PREDICT_SLIDES
                               or DEMO_VALIDATION and sid in VALIDATION_SLIDES)
    return [path] if demo_slide or Path(path).exists() else []


def slide_input(wildcards):
    return _slide_file(wildcards.slide)


# ---------------------------------------------------------------- what each rule's outputs depend on
#
# Each config key a rule's outputs depend on is its own short param ('train.epochs=20'): editing a
# key reruns exactly the rules listed for it here (and what consumes their outputs), and the rerun
# reason names the key. Keys missing on purpose: train.models, extract.write_pt, evaluate.heatmaps
# and predict.heatmaps add or drop jobs; cohort.on_problem, cohort.on_slide_error,
# cohort.max_lost_fraction, tile.on_empty and extract.max_corrupt_fraction only decide whether a bad
# item stops the run, which no
# existing result depends on (a job that failed runs again anyway);
# runtime knobs (threads, batch size, readers, device) are resources.
DEPENDS = {
    "demo_cohort": ["demo.patients", "demo.seed", "demo.level0_mpp", "demo.width_px", "demo.height_px"],
    "demo_new_patients": ["demo.new_patients", "demo.seed", "demo.level0_mpp", "demo.width_px", "demo.height_px"],
    "demo_validation": ["demo.validation_patients", "demo.seed", "demo.level0_mpp", "demo.width_px", "demo.height_px"],
    "segment": ["segment.*", "cohort.mpp_range"],
    "tile": ["tile.target_mpp", "tile.patch_size", "tile.mpp_tolerance", "tile.min_coverage",
             "tile.max_ink_fraction"],
    "extract": ["extract.encoder", "extract.weights", "extract.precision", "extract.channels_last"],
    "splits": ["splits.*", "labels.n_bins", "cohort.status_column"],
    "genes": ["genes.*", "labels.*"],
    "evaluate": ["evaluate.risk_groups"],
    "predict": ["evaluate.risk_groups", "predict.allow_other_mpp"],
    "validation_score": ["evaluate.risk_groups", "predict.allow_other_mpp", "validation.calibration_months"],
    "validate": ["evaluate.risk_groups", "validation.status_column", "cohort.status_column"],
    "heatmaps": ["heatmap.*"],
    # features given by another tool may not say their tiles' size: the tiling settings and the
    # slides' resolution (or CLAM's patch files) do, for the heatmaps (ours carry it, and tile reruns them)
    "heatmap_geometry": ["tile.patch_size", "tile.target_mpp", "cohort.default_mpp", "cohort.patches"]
    if FEATURES_IN else [],
}
TRAIN_KEYS = ["train.epochs", "train.lr", "train.weight_decay", "train.grad_accum", "train.balanced_sampling",
              "train.scheduler", "train.seed", "train.inner_val_fraction"]
MODEL_KEYS = {name: list(spec.sized_by) for name, spec in REGISTRY.items()}  # what sizes each model


def _keys(patterns):
    keys = []
    for pattern in patterns:
        section, name = pattern.split(".")
        keys += [f"{section}.{k}" for k in sorted(config[section])] if name == "*" else [pattern]
    return keys


def _key_param(key):
    section, name = key.split(".")
    return f"{key}={json.dumps(config[section][name])}"


def depends_on(rule):
    """`**` into a rule's params: one recorded param per key of DEPENDS[rule]."""
    return {key.replace(".", "__"): _key_param(key) for key in _keys(DEPENDS[rule])}


def train_depends_on():
    """`**` into train's params: a model's keys are the training keys, early-stopping patience
    only when there is early stopping, and only the architecture keys of the model trained
    (a key that does not apply is an empty param, which Snakemake records as nothing new)."""
    def key_of(key, model=None):
        applies = (key in _keys(MODEL_KEYS[model]) if model else True) and (
            key != "train.patience" or config["train"]["inner_val_fraction"] > 0)
        return _key_param(key) if applies else ""

    keys = _keys(TRAIN_KEYS + ["train.patience"])
    params = {k.replace(".", "__"): key_of(k) for k in keys}
    for key in _keys(sorted({k for ks in MODEL_KEYS.values() for k in ks})):
        params[key.replace(".", "__")] = lambda wc, key=key: key_of(key, wc.model)
    return params


def sections_json(*names, **parts):
    """What the job reads: whole config sections (and parts of others) as one JSON argument.
    A param derived from the input, which Snakemake passes without comparing: the keys above
    decide reruns, so a rerun's reason is one short line, not this JSON."""
    text = json.dumps({**{n: config[n] for n in names}, **parts}, sort_keys=True)
    return lambda wildcards, input: text


def section_json(name):
    """One section's JSON (the slide stages take their section alone); derived, as above."""
    text = json.dumps(config[name], sort_keys=True)
    return lambda wildcards, input: text


def _mpp_of(sid):
    """(mpp, default_mpp) of a slide's segmentation, recorded as its params: the sheet's mpp, or
    cohort.default_mpp as far as the slide depends on it. A slide whose last segmentation took its
    resolution from the file keeps the default that job was given, so editing the default reruns
    only slides that use it (a replaced file reruns anyway, through its mtime)."""
    sheet_mpp = SLIDES[sid]["mpp"]
    if sheet_mpp is not None:
        return sheet_mpp, None
    default = config["cohort"]["default_mpp"]
    try:
        last = json.loads(Path(f"{RESULTS}/segment/{sid}.stats.json").read_text())
    except (OSError, ValueError):
        last = {}
    if last.get("mpp_source") == "file":
        default = last.get("default_mpp_given")
    return None, default


def mpp_args(wildcards):
    mpp, default = _mpp_of(wildcards.slide)
    return f"--mpp {mpp}" if mpp is not None else "" if default is None else f"--default-mpp {default}"


def mpp_range_args(wildcards, input):
    return "--mpp-range {} {}".format(*config["cohort"]["mpp_range"])  # recorded as cohort.mpp_range


def on_error(wildcards, input):
    """--on-error for the slide stages: whether a bad slide fails its job or is recorded as failed
    (cohort.on_slide_error). Derived: it decides whether the run stops, no result depends on it."""
    return f"--on-error {config['cohort']['on_slide_error']}"


def tile_section(wildcards, input):
    tile = dict(config["tile"])
    chunk = getattr(wildcards, "chunk", None)  # a chunk job, or one slide's
    to_score = chunk.startswith("predict") if chunk else wildcards.slide not in COHORT_SLIDES
    if to_score:
        tile["on_empty"] = "record"  # a patient to score without tissue gets a reason, not a failed run
    return json.dumps(tile, sort_keys=True)


# ---------------------------------------------------------------- several slides per job
#
# slides_per_job > 1: segment, tile, extract (and export_pt) run one job per chunk of slides instead
# of one per slide: 10,000 slides at 100 are 300 slide jobs, which Snakemake plans in seconds and a
# cluster queues as 300 submissions. Each slide keeps its own outputs, log and stamp, at the paths
# of the per-slide rules; the chunk's own output is a table of its slides. Chunks follow the sheets'
# order (training slides, then slides to score), so slides added at the end rerun only the last.
SLIDES_PER_JOB = config["slides_per_job"] or (DEMO_SLIDES_PER_JOB if USE_DEMO else 1)
CHUNKED = SLIDES_PER_JOB > 1


def _chunks(kind, ids):
    ids = list(ids)
    return {f"{kind}{i // SLIDES_PER_JOB:05d}": ids[i:i + SLIDES_PER_JOB] for i in range(0, len(ids), SLIDES_PER_JOB)}


_CHUNKED_COHORT = {} if FEATURES_IN else COHORT_SLIDES  # a slide both trained on and scored: once, as cohort
CHUNKS = {**_chunks("cohort", _CHUNKED_COHORT),
          **_chunks("predict", [s for s in SCORED_SLIDES if s not in _CHUNKED_COHORT])} if CHUNKED else {}
CHUNK_OF = {sid: chunk for chunk, ids in CHUNKS.items() for sid in ids}
CHUNK_TABLES = {  # where each stage's chunk tables go (the features' beside them, per encoder)
    "segment": f"{RESULTS}/segment/chunks",
    "tile": f"{RESULTS}/tile/chunks",
    "extract": f"{FEATURES_DIR}/chunks",
    "export_pt": f"{FEATURES_DIR}/pt_files/chunks",
}


def slides_done(stage, slide_ids, per_slide):
    """The files that say `stage` is done for these slides: each slide's own (`per_slide`, a path
    with {slide}), or with slides_per_job > 1 the tables of the chunks that hold them."""
    if not CHUNKED:
        return [per_slide.format(slide=sid) for sid in slide_ids]
    return sorted({f"{CHUNK_TABLES[stage]}/{CHUNK_OF[sid]}.tsv" for sid in slide_ids})


def settings_digest(stage, sid):
    """What a slide's outputs of `stage` depend on: the stage's keys (DEPENDS), its file and, for
    segment, its resolution. A chunk job writes it into each slide's stamp, since Snakemake keeps no
    record of the settings behind outputs a chunk made; a later job per slide compares it."""
    what = {"keys": [_key_param(k) for k in _keys(DEPENDS.get(stage, []))], "path": SLIDES[sid]["path"]}
    if stage == "segment":
        what["mpp"] = list(_mpp_of(sid))
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def chunk_slides(stage, with_mpp=False):
    """A chunk's slides as the JSON list `--slides` takes, recorded as the chunk's param: a slide
    added, removed, moved or given another resolution reruns its chunk (and within it, that slide)."""
    def slides(wildcards):
        rows = []
        for sid in CHUNKS[wildcards.chunk]:
            row = {"slide_id": sid, "path": SLIDES[sid]["path"], "settings": settings_digest(stage, sid)}
            if with_mpp:
                mpp, default = _mpp_of(sid)
                row.update({k: v for k, v in (("mpp", mpp), ("default_mpp", default)) if v is not None})
            rows.append(row)
        text = json.dumps(rows)
        if len(text) > 100_000:  # bash takes one argument of at most 128 KB
            fits = max(1, SLIDES_PER_JOB * 100_000 // len(text))
            raise ValueError(f"slides_per_job: {SLIDES_PER_JOB} slides' paths make chunk {wildcards.chunk}'s command "
                             f"{len(text):,} characters, more than a command line holds; set slides_per_job to {fits} "
                             "or less")
        return text
    return slides


# a slide's first output of each stage, beside which its stamp lies
FIRST_OUTPUT = {"segment": f"{RESULTS}/segment/{{slide}}.geojson", "tile": f"{RESULTS}/tile/{{slide}}.h5",
                "extract": f"{FEATURES_DIR}/{{slide}}.h5"}


def _chunk_made(stage, sid):
    """The stamp of a slide's outputs of `stage` when a chunk job made them (or made them first), else None."""
    try:
        made = json.loads(stamp_path(FIRST_OUTPUT[stage].format(slide=sid)).read_text())
    except (OSError, ValueError):
        return None
    return made if str(made.get("made_by", "")).startswith("chunk") else None


def chunk_provenance(stage):
    """An input of the per-slide rules. Snakemake keeps no record of the settings behind outputs a chunk
    job made (the chunk's only output is its table), so an edit after switching back to a job per
    slide would plan nothing. For such a slide, a marker file is an input: touched, so newer than
    the outputs, when the settings its stamp records differ from now (the job reruns), else ancient
    (never a reason). Slides a chunk never made have none: Snakemake's own records do it for them."""
    def marker(wildcards):
        made = None if CHUNKED else _chunk_made(stage, wildcards.slide)
        if made is None:
            return []
        path = Path(RESULTS) / ".provenance" / stage / wildcards.slide
        path.parent.mkdir(parents=True, exist_ok=True)
        if made.get("settings") != settings_digest(stage, wildcards.slide):
            path.touch()
            return [str(path)]
        if not path.exists():
            path.touch()
            os.utime(path, (0, 0))
        return [ancient(str(path))]
    return marker


def stamp_extra(stage):
    """--stamp-extra of a job per slide: where a chunk made the slide's outputs first, the stamp keeps
    saying so (the marker above stays an input, as Snakemake recorded it) with the settings of now."""
    def extra(wildcards, input):
        chunk = not CHUNKED and _chunk_made(stage, wildcards.slide) is not None
        what = {"made_by": "chunk+slide", "settings": settings_digest(stage, wildcards.slide)} if chunk else {}
        return json.dumps(what)
    return extra


def chunk_slide_files(wildcards):
    """The chunk's slide files that exist (or the demo will make): as slide_input, per slide."""
    return [p for sid in CHUNKS[wildcards.chunk] for p in _slide_file(sid)]


def slide_patterns(**options):
    """A chunk job's per-slide paths as `--option 'path with {slide}'`; the command fills in each
    slide. Derived (the chunk's slides are the recorded param), and a function: Snakemake would
    read a {slide} in a plain string param as a wildcard."""
    text = " ".join(f"--{name.replace('_', '-')} {shlex.quote(path)}" for name, path in options.items())
    return lambda wildcards, input: text


def train_features(wildcards):
    """Every slide's features for the models that read slides; the SNNs read only genomics."""
    return [f"{FEATURES_DIR}/manifest.csv"] if REGISTRY[wildcards.model].reads_slides else []


def manifest_inputs(wildcards):
    """The cohort's feature files: ours, or (cohort.features) the ones found for its slides. A slide
    without one is not an input, so the DAG builds and the manifest job names every such slide."""
    if not FEATURES_IN:
        return slides_done("extract", COHORT_SLIDES, f"{FEATURES_DIR}/{{slide}}.h5")
    return [str(p) for p in (find_feature_file(FEATURES_IN, sid) for sid in COHORT_SLIDES) if p]


def manifest_source(wildcards, input):
    """What feature-manifest reads: the cohort's slide list (the sheet, or the clinical table for
    features given without one) and the folder of their files, never the files themselves on the
    command line (10,000 paths overflow it); with cohort.features, the encoder that names files
    carrying none. Derived: the files are inputs."""
    slides = f"--slide-sheet {shlex.quote(SHEET)}" if SHEET else f"--clinical {shlex.quote(CLINICAL)}"
    given = f" --declared-encoder {shlex.quote(config['extract']['encoder'])}" if FEATURES_IN else ""
    return f"--features-dir {shlex.quote(COHORT_FEATURES_DIR)} {slides}{given}"


# heatmaps of held-out patients need their slides (and coords): features given without a sheet have none
HEATMAP_MODEL = config["evaluate"]["heatmap_model"]  # whose attention (a registry entry with attention)
HEATMAPS = HEATMAP_MODEL in MODELS and config["evaluate"]["heatmaps"] and bool(SHEET)
if HEATMAP_MODEL in MODELS and config["evaluate"]["heatmaps"] and not SHEET:
    print("heatmaps skipped: the cohort is given as features without a slide sheet (cohort.slide_sheet "
          "names the slides to draw them on)", file=sys.stderr)


# external validation: every trained model that scores slides alone, where there is a training cohort
VALIDATION_MODELS = [m for m in MODELS if REGISTRY[m].predicts]
VALIDATE = HAS_OUTCOMES and bool(VALIDATION_SLIDES) and bool(VALIDATION_MODELS)
if VALIDATION_SLIDES and not VALIDATE:
    why = "no model that scores slides alone is trained" if HAS_OUTCOMES else "there is no training cohort (cohort.clinical)"
    print(f"validation skipped: {why}", file=sys.stderr)


def validation_features(wildcards):
    """The cohort's feature files: ours, or those validation.features has for its slides (a slide
    without one is not an input: the scoring job names it as unscored)."""
    if VALIDATION_FEATURES_IN:
        found = (find_feature_file(VALIDATION_FEATURES_IN, sid) for sid in VALIDATION_SLIDES)
        return [str(p) for p in found if p]
    return slides_done("extract", VALIDATION_SLIDES, f"{FEATURES_DIR}/{{slide}}.h5")


def validation_slides_arg(wildcards, input):
    """Where the scoring job reads the cohort's slides: its sheet, or the clinical table's slide_id."""
    return f"--slide-sheet {shlex.quote(VALIDATION_SHEET)}" if VALIDATION_SHEET else \
        f"--clinical {shlex.quote(VALIDATION_CLINICAL)}"


FAILURES_CSV = f"{RESULTS}/report/failures.csv"


def write_failures():
    """The run summary: what the run could not use (also written to failures.csv), and the jobs
    that ran degraded (a GPU job that found no GPU)."""
    for row in failure_summary(RESULTS, FAILURES_CSV, slides=SLIDES):
        print(f"{row['status']}: {row['stage']} {row['item']}: {row['reason']}")
    alike = {}  # one line per stage and reason: a CPU-only run has many GPU jobs without a GPU
    for row in job_warnings(RESULTS, slides=SLIDES):
        alike.setdefault((row["stage"], row["reason"]), []).append(row["item"])
    for (stage, reason), items in alike.items():
        shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        print(f"warning: {stage} ({len(items)} job{'s' * (len(items) > 1)}: {shown}): {reason}")


# The report's Failures section (workflow/report/workflow.rst) renders the last run's failure
# summary, and its opening the models this run trains (train.models may be empty: the default set);
# the report's template sees only the config, and these keys are set after validation.
config["_failures"] = read_failures(FAILURES_CSV)
config["_models"] = MODELS


def all_targets():
    # the slide report needs every slide segmented and tiled, the manifest every cohort slide's
    # features: two targets instead of four per slide keep the DAG quick to build
    targets = [f"{FEATURES_DIR}/manifest.csv"] + ([f"{RESULTS}/report/slides.csv"] if SLIDES else [])
    targets += slides_done("extract", SCORED_SLIDES, f"{FEATURES_DIR}/{{slide}}.h5")
    if config["extract"]["write_pt"]:
        targets += slides_done("export_pt", SLIDES, f"{FEATURES_DIR}/pt_files/{{slide}}.pt")
    if HAS_OUTCOMES:
        targets += [f"{RESULTS}/genes/fold_{k}/selection.json" for k in FOLDS]
        targets += [f"{EVAL_DIR}/comparison.csv", f"{EVAL_DIR}/km.png"]
        if HEATMAPS:
            targets += [f"{RESULTS}/heatmaps/fold_{k}" for k in FOLDS]
    if VALIDATE:
        targets.append(f"{VALIDATION_DIR}/validation.csv")
    if PREDICT_SLIDES and PREDICT_MODEL:
        targets.append(f"{PREDICT_DIR}/predictions.csv")
    elif PREDICT_SLIDES:
        print("prediction skipped: train.models has no model that scores slides alone", file=sys.stderr)
    return targets
