"""`ghanet`: one subcommand per stage. Each reads its config section as JSON (`--params`, what the
Snakemake rules pass) or from a config file (`--config`), validates it with the schema, and runs
the stage's function. Errors a user can fix print as one line and exit 1."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from . import __version__, stamps
from .config import encoder_tile, load_config, validate_config
from .errors import GhanetError
from .io import atomic_path
from .sheet import read_slides

log = logging.getLogger("ghanet")


def _section(args, name: str) -> dict:
    """The validated config section `name` from --params JSON or --config FILE (defaults filled)."""
    if args.params is not None:
        try:
            raw = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise GhanetError(f"--params is not valid JSON ({exc})") from None
        return validate_config({name: raw}, what="--params")[name]
    return (load_config(args.config) if args.config else validate_config({}))[name]


def _sections(args) -> dict:
    """The whole validated config, from --params JSON of {section: {...}} or --config FILE; for
    stages that read several sections (missing ones take their defaults)."""
    if args.params is not None:
        try:
            raw = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise GhanetError(f"--params is not valid JSON ({exc})") from None
        return validate_config(raw, what="--params")
    return load_config(args.config) if args.config else validate_config({})


def _add_stage_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--params", help="the stage's config section as JSON (what the workflow passes)")
    g.add_argument("--config", help="a config.yaml to take the stage's section from")


def _add_demo_args(p) -> None:
    p.add_argument("out")
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=4096, help="level-0 width in pixels")
    p.add_argument("--height", type=int, default=3072, help="level-0 height in pixels")
    p.add_argument("--mpp", type=float, default=0.5, help="level-0 microns per pixel")


def _add_slides_args(p: argparse.ArgumentParser) -> None:
    """Several slides in one job (slides_per_job): the paths of the other options hold {slide}."""
    p.add_argument("--slides", default=None,
                   help="instead of one slide: a JSON list of {slide_id, path[, mpp, default_mpp]}; the "
                        "file options are patterns with {slide}")
    p.add_argument("--slide-log", default=None, help="with --slides: each slide's log, a pattern with {slide}")
    p.add_argument("--done", default=None, help="with --slides: the table of the job's slides, written last")
    p.add_argument("--stamp-extra", default=None,
                   help="JSON the slide's stamp also records (the workflow's provenance of outputs a chunk made)")


def _add_slide_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slide", default=None, help="path to the whole-slide image")
    p.add_argument("--slide-id", default=None, help="the slide's id (names its outputs)")
    _add_slides_args(p)
    p.add_argument("--mpp", type=float, default=None, help="level-0 microns per pixel (overrides the file)")
    p.add_argument("--default-mpp", type=float, default=None,
                   help="mpp for a file without metadata (cohort.default_mpp)")
    p.add_argument("--mpp-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="plausible level-0 um/px (cohort.mpp_range; default 0.1 10)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="a slide that cannot be used fails the command, or is recorded as failed (cohort.on_slide_error)")


def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (a free GPU if the job has one, else the CPU), cpu, cuda (a free GPU, or an "
                   "error), cuda:<i> (that one)")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs the job asked the scheduler for (the rule's gpu resource); with 0, auto is the CPU")


# The slide commands: which options are a slide's input files and which its outputs (its stamp's
# make rule), and the options that change how a slide is run but not what it gives.
SLIDE_FILES = {
    "segment": ([], ["geojson", "qc", "stats"]),
    "tile": (["contours", "segment_stats", "segment_qc"], ["coords", "qc"]),
    "extract": (["coords"], ["features", "features_pt"]),
    "export-pt": (["features"], ["out"]),
}
RUNTIME_ARGS = {"func", "command", "verbose", "on_error", "device", "gpus", "batch_size", "workers", "threads",
                "slide_reader", "reader", "slides", "slide_log", "done", "stamp_extra"}


def _stamp(args) -> tuple[list[str], list[str], dict]:
    """A slide's input files, its outputs, and the arguments its outputs depend on."""
    ins, outs = SLIDE_FILES[args.command]
    inputs = [getattr(args, a) for a in ins if getattr(args, a)] + ([args.slide] if getattr(args, "slide", None) else [])
    outputs = [getattr(args, a) for a in outs if getattr(args, a)]
    return inputs, outputs, {k: v for k, v in vars(args).items() if k not in RUNTIME_ARGS}


def _run_slide(args, made_by: dict | None = None) -> None:
    """One slide's stage, then its stamp (which a job of several slides reads to skip it). The old
    stamp goes first: outputs rewritten by a job killed before its stamp are never vouched for.
    `made_by`: a chunk job's mark and the workflow's digest of the slide's settings, which Snakemake
    does not record for outputs a chunk makes (the workflow reads them back with a job per slide)."""
    _, outputs, kept = _stamp(args)
    stamps.clear_stamp(outputs)
    args.func(args)
    stamps.write_stamp(kept, outputs, made_by or json.loads(getattr(args, "stamp_extra", None) or "{}"))


class ChunkFailed(GhanetError):
    """Some slides of a job of several failed; each slide's own log names why."""


@contextlib.contextmanager
def _logging_to(path: str):
    """The slide's log: what the stage logs and prints while it runs (the job's log has it too)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            with contextlib.redirect_stderr(fh):
                yield fh
        finally:
            logging.getLogger().removeHandler(handler)


def _run_slides(args) -> None:
    """The slides of `--slides`, one after another in this process (the encoder loads once), each
    with its own log, skipped when up to date (a rerun after a kill or an edit redoes only what
    changed). A slide that fails does not stop the others; the job fails at the end, naming them."""
    try:
        entries = json.loads(args.slides)
    except json.JSONDecodeError as exc:
        raise GhanetError(f"--slides is not valid JSON ({exc})") from None
    if not args.slide_log or not args.done:
        raise GhanetError("--slides needs --slide-log and --done")
    if args.command == "extract":  # one GPU claimed for the whole job, not one per slide
        from . import devices

        args.device = devices.resolve(args.device, args.gpus > 0, "extract")
    patterns = [n for files in SLIDE_FILES[args.command] for n in files]
    rows, failed = [], []
    for entry in entries:
        sid = entry["slide_id"]
        one = argparse.Namespace(**{**vars(args), "slides": None})
        for name in patterns:
            if getattr(one, name):
                setattr(one, name, getattr(one, name).replace("{slide}", sid))
        for key, attr in (("slide_id", "slide_id"), ("path", "slide"), ("mpp", "mpp"), ("default_mpp", "default_mpp")):
            if key in entry and hasattr(one, attr):
                setattr(one, attr, entry[key])
        log_path = args.slide_log.replace("{slide}", sid)
        inputs, outputs, kept = _stamp(one)
        if stamps.up_to_date(kept, inputs, outputs):
            status = "up to date"  # its log stays as its last run wrote it
        else:
            with _logging_to(log_path) as fh:
                try:
                    _run_slide(one, {"made_by": "chunk", "settings": entry.get("settings")})
                    status = "done"
                except GhanetError as exc:
                    status = f"failed: {exc}"
                    print(f"ghanet {args.command}: error: {exc}", file=fh)
                except Exception as exc:  # noqa: BLE001 - a bug of ours: this slide's log says so, the rest go on
                    status = f"failed: {_unexpected(args.command, exc, fh)}"
        if status.startswith("failed"):
            failed.append(sid)
        log.info("%s %s: %s (log: %s)", args.command, sid, status, log_path)
        rows.append(f"{sid}\t{status}")
    if failed:
        raise ChunkFailed(f"{len(failed)} of {len(entries)} slides failed: {', '.join(failed)}; each slide's "
                          f"log says why ({args.slide_log})")
    with atomic_path(args.done) as tmp:
        tmp.write_text("slide_id\tstatus\n" + "".join(r + "\n" for r in rows))


def cmd_demo_cohort(args) -> None:
    from . import demo

    sheet = demo.write_cohort(args.out, args.patients, args.seed, width=args.width,
                              height=args.height, mpp=args.mpp)
    log.info("demo cohort: %d slides of %d patients in %s", len(sheet), args.patients, args.out)


def cmd_demo_new_patients(args) -> None:
    from . import demo

    demo.write_new_patients(args.out, args.patients, args.seed, width=args.width, height=args.height, mpp=args.mpp)
    log.info("demo: %d new patients to score from their slides in %s", args.patients, args.out)


def cmd_demo_validation(args) -> None:
    from . import demo

    demo.write_validation(args.out, args.patients, args.seed, width=args.width, height=args.height, mpp=args.mpp)
    log.info("demo: %d held-out patients with outcomes to validate on in %s", args.patients, args.out)


def _slide_stage(args, work, record) -> None:
    """Run one slide stage. With --on-error skip (cohort.on_slide_error) a slide that cannot be
    used is recorded as failed in the stage's outputs, `record(reason)`, said in a warning line,
    and the command succeeds: the later stages pass the failure on."""
    try:
        work()
    except GhanetError as exc:
        if args.on_error != "skip":
            raise
        record(str(exc))
        print(f"ghanet {args.command}: warning: slide {args.slide_id} skipped (cohort.on_slide_error: skip): {exc}",
              file=sys.stderr)


def cmd_segment(args) -> None:
    from . import segment

    def work():
        stats = segment.run(args.slide, args.slide_id, _section(args, "segment"), geojson=args.geojson,
                            qc_png=args.qc, stats_json=args.stats, sheet_mpp=args.mpp,
                            default_mpp=args.default_mpp, mpp_range=args.mpp_range)
        log.info("segment %s: %d piece(s), %d hole(s), %.3f mm2 tissue", args.slide_id,
                 stats["n_pieces"], stats["n_holes"], stats["tissue_area_mm2"])

    _slide_stage(args, work, lambda why: segment.record_failure(
        args.slide_id, why, geojson=args.geojson, qc_png=args.qc, stats_json=args.stats))


def cmd_tile(args) -> None:
    from . import tile

    def work():
        res = tile.run(args.slide, args.slide_id, _section(args, "tile"), contours=args.contours,
                       coords_h5=args.coords, qc_png=args.qc, sheet_mpp=args.mpp, default_mpp=args.default_mpp,
                       segment_stats=args.segment_stats, mpp_range=args.mpp_range, segment_qc=args.segment_qc)
        log.info("tile %s: %d tiles of %d level-0 px read at level %d", args.slide_id, res["n_tiles"],
                 res["patch_size_level0"], res["patch_level"])

    _slide_stage(args, work, lambda why: tile.record_failure(args.slide_id, why, coords_h5=args.coords,
                                                             qc_png=args.qc))


def cmd_extract(args) -> None:
    from . import extract

    def work():
        reading = extract.Reading(args.batch_size, args.workers, args.reader == "processes", args.slide_reader)
        res = extract.run(args.slide, args.slide_id, _section(args, "extract"), coords_h5=args.coords,
                          features_h5=args.features, features_pt=args.features_pt, device=args.device,
                          threads=args.threads, reading=reading, wants_gpu=args.gpus > 0)
        log.info("extract %s: %d x %d features (%s, %s, read by %s)", args.slide_id, res["n_tiles"], res["dim"],
                 res["encoder"], res["precision"], res.get("reader", "none"))

    _slide_stage(args, work, lambda why: extract.record_failure(args.slide_id, why, features_h5=args.features))


def cmd_export_pt(args) -> None:
    from . import extract, features

    feats, _, _ = features.read_features(args.features)
    extract.write_features_pt(args.out, feats)
    log.info("export-pt: %d x %d features to %s", feats.shape[0], feats.shape[1], args.out)


def cmd_splits(args) -> None:
    from . import splits

    cfg = _sections(args)
    slides = _cohort_slides(args)
    splits.run(args.clinical, {sid: row["case_id"] for sid, row in slides.items()}, cfg["splits"], cfg["cohort"],
               cfg["labels"], out_dir=args.out_dir)


def cmd_genes(args) -> None:
    from . import genes

    cfg = _sections(args)
    genes.run(args.patients, args.fold_csv, args.signatures, cfg["genes"], cfg["labels"],
              out_dir=args.out_dir, fold=args.fold)


def cmd_train(args) -> None:
    from . import features, train

    n_folds = json.loads(open(args.splits_summary).read())["folds"] if args.splits_summary else None
    train.run(args.model, args.fold, patients_csv=args.patients, fold_csv=args.fold_csv,
              selection_json=args.selection, scaler_csv=args.scaler, features_dir=args.features_dir,
              declared_encoder=features.declared_encoder(args.manifest) if args.manifest else None,
              sections=_sections(args), out_dir=args.out_dir, device=args.device, threads=args.threads,
              wants_gpu=args.gpus > 0, n_folds=n_folds)


def cmd_evaluate(args) -> None:
    from . import evaluate

    evaluate.run(args.model_dirs, _sections(args)["evaluate"], out_dir=args.out_dir)


def cmd_predict(args) -> None:
    from . import heatmap, predict

    cfg = _sections(args)
    predict.run(args.slide_sheet, args.models_dir, out_csv=args.out, features_dir=args.features_dir,
                work_dir=args.work_dir, scheme=cfg["evaluate"]["risk_groups"],
                allow_other_mpp=args.allow_other_mpp or cfg["predict"]["allow_other_mpp"],
                heatmaps_dir=args.heatmaps_dir, heatmap_settings=heatmap.Settings.of(cfg["heatmap"]),
                device=args.device, threads=args.threads)


def _validation_slides(args):
    """The validation cohort's slides (slide_id, case_id, path): its sheet's, or without one (features
    given) the clinical table's slide_id column."""
    import pandas as pd

    from .sheet import slides_from_clinical

    rows = read_slides(args.slide_sheet) if args.slide_sheet else slides_from_clinical(args.clinical)
    return pd.DataFrame([{k: r[k] for k in ("slide_id", "case_id", "path")} for r in rows.values()])


def cmd_validation_score(args) -> None:
    from . import predict

    if not (args.slide_sheet or args.clinical):
        raise GhanetError("give --slide-sheet, or --clinical whose slide_id column names the feature files")
    cfg = _sections(args)
    predict.score_cohort(args.models_dir, _validation_slides(args), args.features_dir, out_csv=args.out,
                         scheme=cfg["evaluate"]["risk_groups"], allow_other_mpp=cfg["predict"]["allow_other_mpp"],
                         calibration_months=cfg["validation"]["calibration_months"])


def cmd_validate(args) -> None:
    from . import validate

    cfg = _sections(args)
    validate.run(args.risks, args.clinical, scheme=cfg["evaluate"]["risk_groups"], out_dir=args.out_dir,
                 status_column=cfg["validation"]["status_column"] or cfg["cohort"]["status_column"])


def _no_heatmap(part: dict) -> str | None:
    """Why a slide's heatmap cannot be drawn: imported features may have no coords in pixels
    (MCAT's .pt, STAMP's microns), or their slide may not be here."""
    from .features import FORMATS

    if part["coords"] is None:
        kind = FORMATS[part["attrs"].get("format", "ghanet")]
        return f"slide {part['slide_id']}: its feature file ({kind}) has no coords in level-0 pixels"
    if not part["path"] or not Path(part["path"]).is_file() and not Path(part["path"]).is_dir():
        return f"slide {part['slide_id']}: slide file {part['path']} not found"
    return None


def _with_geometry(part: dict, row: dict, cfg: dict) -> None:
    """The part's tile geometry completed from the slide and the settings (another tool's file may
    carry none: heatmap.tile_geometry); a GhanetError says why it cannot be."""
    from . import heatmap, wsi
    from .features import plain_attr

    attrs = part["attrs"]
    if "patch_size_level0" in attrs and "patch_level" in attrs and attrs.get("level0_mpp"):
        return  # ours: complete
    patches_attrs = None
    if cfg["cohort"].get("patches"):
        import h5py

        found = Path(cfg["cohort"]["patches"]) / f"{part['slide_id']}.h5"
        if not found.is_file():
            raise GhanetError(f"slide {part['slide_id']}: no CLAM patch file {found} (cohort.patches)")
        with h5py.File(found, "r") as f:
            patches_attrs = {k: plain_attr(v) for k, v in f["coords"].attrs.items()}
    slide = wsi.open_slide(part["path"], part["slide_id"])
    try:
        try:
            mpp0, _ = wsi.resolve_mpp(slide, part["slide_id"], row.get("mpp"), cfg["cohort"]["default_mpp"],
                                      cfg["cohort"]["mpp_range"])
        except GhanetError:
            mpp0 = None  # a CLAM patch file or TRIDENT's attributes need none
        part["attrs"] = heatmap.tile_geometry(attrs, slide, part["slide_id"], mpp0, cfg["tile"], patches_attrs)
    finally:
        slide.close()


def cmd_heatmaps(args) -> None:
    from . import features, heatmap, models, splits, train

    cfg = _sections(args)
    settings = heatmap.Settings.of(cfg["heatmap"])
    ckpt = train.load_checkpoint(args.model)
    if not models.spec(ckpt["model"]).attention:
        raise GhanetError(f"{args.model} is a {ckpt['model']} model, which gives no patch attention; "
                          f"heatmaps are drawn by {', '.join(models.having('attention'))}")
    _, val_ids = splits.read_fold(args.fold_csv)
    patients = splits.read_patients(args.patients)
    rows = read_slides(args.slide_sheet)
    skipped = {}
    for case_id in val_ids:
        parts = []
        for sid in patients.at[case_id, "slide_ids"].split(";"):
            fpath = features.feature_path(args.features_dir, sid)
            feats, coords, attrs = features.read_features(fpath)
            parts.append({"slide_id": sid, "path": rows[sid]["path"], "features": feats, "coords": coords,
                          "attrs": features.feature_coords_attrs(fpath, attrs)})
        why = next(filter(None, map(_no_heatmap, parts)), None)
        for part in parts if why is None else []:
            try:
                _with_geometry(part, rows[part["slide_id"]], cfg)
            except GhanetError as exc:
                why = str(exc)
                break
        if why:
            skipped[case_id] = why
            log.warning("heatmap of patient %s skipped: %s", case_id, why)
        elif sum(len(p["features"]) for p in parts):
            heatmap.render_patient([ckpt["module"]], list(ckpt["families"]), parts, args.out_dir, settings)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    heatmap.write_gallery(args.out_dir)
    log.info("heatmaps of the %d held-out patients of fold %d in %s%s", len(val_ids) - len(skipped), ckpt["fold"],
             args.out_dir, f" ({len(skipped)} skipped, each named above)" if skipped else "")


def _cohort_slides(args) -> dict:
    """The cohort's slides: the slide sheet's, or (features given without one) the clinical table's."""
    from .sheet import slides_from_clinical

    return read_slides(args.slide_sheet) if args.slide_sheet else slides_from_clinical(args.clinical)


def cmd_feature_manifest(args) -> None:
    from . import features

    if args.features_dir:  # every slide of the sheet (or clinical table): ours, or given (cohort.features)
        ids = list(_cohort_slides(args))
        paths = features.imported(args.features_dir, ids, args.declared_encoder)
        table = features.manifest(paths, args.out, args.max_lost_fraction, declared=args.declared_encoder,
                                  slide_ids=ids)
    else:
        table = features.manifest(args.features, args.out, args.max_lost_fraction)
    log.info("features of %d slides, %d tiles", len(table), int(table.n_tiles.sum()))


def cmd_slide_report(args) -> None:
    from . import report

    if args.stats_pattern:  # every slide of the sheets: a list of 10,000 paths would not fit a command line
        ids = list(dict.fromkeys(sid for sheet in args.sheets for sid in read_slides(sheet)))
        args.stats = [args.stats_pattern.format(slide=sid) for sid in ids]
        args.coords = [args.coords_pattern.format(slide=sid) for sid in ids]
    features = [args.features_pattern.format(slide=sid) for sid in ids] if args.features_pattern else None
    if len(args.stats) != len(args.coords):
        raise GhanetError("slide-report needs one --coords file per --stats file, in the same order")
    table = report.run(args.stats, args.coords, args.out, sheets=args.sheets, qc_images=args.qc_images,
                       gallery_dir=args.gallery_dir, features_paths=features)
    empty = table[table.status != "ok"]
    log.info("slide report: %d slides, %d without tiles%s", len(table), len(empty),
             f" ({', '.join(empty.slide_id)})" if len(empty) else "")


def cmd_encoders(args) -> None:
    """Every registered encoder: its width, pooling, access and whether its weights are here."""
    from . import encoders

    cfg = load_config(args.config_file) if args.config_file else None
    chosen = cfg["extract"] if cfg else {"encoder": None, "weights": None}
    print(f"Hugging Face cache: {encoders.hub_cache_dir()}")
    print(f"{'encoder':20s} {'dim':>5s}  {'pooling':8s}  {'params':>6s}  weights")
    for spec in encoders.REGISTRY.values():
        weights = chosen["weights"] if spec.name == chosen["encoder"] else None
        where = encoders.locate(spec, weights)
        found = f"found: {where.path}" if where.path else f"not found (looked in {where.looked}; {where.fetch or 'see README'})"
        print(f"{spec.name:20s} {spec.dim:5d}  {spec.pooling:8s}  {spec.params:>6s}  {found}")
        px, mpp = encoder_tile(spec.name)
        print(f"{'':20s} {'':5s}  access: {spec.gate}; tiles: {px} px at {mpp:g} um/px"
              + (f", resized to {spec.resize or spec.input_size}" if (spec.resize or spec.input_size) != px else ""))
    print(f"{'timm:<name>':20s} any timm model; weights from the local cache or extract.weights")
    print(f"{'timm:hf-hub:<repo>':20s} a timm model on the hub, built from its cached config.json")


def _encoder_problems(extract: dict) -> list[str]:
    """The encoder resolved and its weights located, as extract would, without loading them."""
    from . import encoders

    try:
        spec = encoders.resolve(extract["encoder"])
    except GhanetError as exc:
        return [str(exc)]
    where = encoders.locate(spec, extract["weights"])
    if where.path:
        print(f"encoder {spec.name}: {spec.dim}-d, weights {where.path}")
        return []
    fetch = f"; on a machine with network run `{where.fetch}` and copy the cache here" if where.fetch else ""
    return [f"encoder {spec.name}: weights not found (looked in {where.looked}){fetch}, or set extract.weights "
            "to the file"]


def _cuda_line() -> str:
    import torch

    from .devices import _no_cuda_reason

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.device_count()} GPU(s) visible, {torch.cuda.get_device_name(0)}"
    return f"CUDA: none ({_no_cuda_reason(torch)}); GPU jobs will run on the CPU"


SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm")


def cmd_init(args) -> None:
    """A slide sheet from a folder of slides (mpp read from each file) and a config that names it."""
    import os
    import re

    from . import wsi

    folder, sheet, config = Path(args.slides), Path(args.sheet), Path(args.config_out)
    for path in (sheet, config):
        if path.exists():
            raise GhanetError(f"{path} exists; move it away or choose another name (--sheet/--config-out)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SLIDE_SUFFIXES and p.is_file()
                   and p.suffix.lower() != ".dcm")
    files += sorted({p.parent for p in folder.rglob("*.dcm")})  # a DICOM slide is a folder of files
    if not files:
        raise GhanetError(f"no slides under {folder} (looked for {', '.join(SLIDE_SUFFIXES)}); give the folder "
                          "that holds them")
    rows, unknown, seen = [], [], set()
    for path in files:
        sid = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem if path.is_file() else path.name).lstrip("._-") or "slide"
        while sid in seen:
            sid += "_dup"
        seen.add(sid)
        tcga = re.match(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})", sid)  # a TCGA barcode's patient part
        mpp = ""
        try:
            slide = wsi.open_slide(path, sid)
            try:
                mpp = f"{wsi.resolve_mpp(slide, sid, None, None)[0]:.4g}"
            finally:
                slide.close()
        except GhanetError as exc:
            unknown.append(f"{sid}: {exc}")
        rows.append({"slide_id": sid, "case_id": tcga.group(1) if tcga else sid,
                     "path": os.path.relpath(path.resolve(), sheet.resolve().parent),
                     "mpp": mpp})
    import csv

    from .io import atomic_path

    with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["slide_id", "case_id", "path", "mpp"])
        w.writeheader()
        w.writerows(rows)
    template = Path(__file__).resolve().parent.parent / "config.yaml"  # the workflow's own, beside the package
    template = template.read_text() if template.is_file() else "cohort:\n  slide_sheet: null \n  clinical: null\n"
    text = re.sub(r"(?m)^  slide_sheet: null .*$", f"  slide_sheet: {sheet}      # written by ghanet init from {folder}",
                  template, count=1)
    text = re.sub(r"(?m)^  clinical: null.*$", "  clinical: null         # your MCAT-format clinical table, to train",
                  text, count=1)
    with atomic_path(config) as tmp:
        tmp.write_text(text)
    print(f"{sheet}: {len(rows)} slides of {len({r['case_id'] for r in rows})} patients "
          f"(case_id: the TCGA patient barcode where there is one, else the slide id; edit as needed)")
    for line in unknown:
        print(f"  no usable resolution, fill its mpp column: {line}")
    print(f"{config}: the default config with cohort.slide_sheet set; then `ghanet check-config {config}`")


def cmd_check_config(args) -> None:
    """The config and its sheets, and every slide's header: all problems at once, before any job."""
    from .layouts import find_feature_file

    cfg = load_config(args.config_file)
    given = cfg["cohort"]["features"]  # a cohort given as features: its slides are not read
    as_features = {"cohort": given, "validation": cfg["validation"]["features"]}
    sheets = [cfg[s]["slide_sheet"] for s in ("cohort", "predict", "validation") if cfg[s]["slide_sheet"]
              and not as_features.get(s)]
    slides = {sid: row for sheet in sheets for sid, row in read_slides(sheet).items()}
    # the encoder runs only on slides: with imported features, only on the patients to predict
    encoder = _encoder_problems(cfg["extract"]) if slides or not given else []
    print(_cuda_line())
    problems = []
    if given:
        cohort = _cohort_slides(argparse.Namespace(slide_sheet=cfg["cohort"]["slide_sheet"],
                                                   clinical=cfg["cohort"]["clinical"]))
        missing = [sid for sid in cohort if find_feature_file(given, sid) is None]
        problems += [f"slide {sid}: no feature file in {given} (<slide_id>.h5, h5_files/, .pt or pt_files/); "
                     "add it, or remove the slide from the cohort" for sid in missing]
        print(f"cohort.features {given}: {len(cohort) - len(missing)} of {len(cohort)} slides have a feature file")
    if slides:
        from . import wsi

        for sid, row in slides.items():
            try:
                slide = wsi.open_slide(row["path"], sid)
                try:
                    wsi.resolve_mpp(slide, sid, row["mpp"], cfg["cohort"]["default_mpp"], cfg["cohort"]["mpp_range"])
                finally:
                    slide.close()
            except GhanetError as exc:
                problems.append(str(exc))
    if problems or encoder:
        total = len(slides) + (len(cohort) if given else 0)
        said = ([f"{len(problems)} of {total} slides cannot be used"] if problems else []) + (
            ["the encoder cannot be loaded"] if encoder else [])
        raise GhanetError(f"{args.config_file}: {' and '.join(said)}:\n"
                          + "\n".join(f"  - {p}" for p in encoder + problems))
    opened = f"; {len(slides)} slides open, with a plausible resolution" if slides else ""
    print(f"{args.config_file}: valid{opened}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghanet", description="ghanet-pipeline: whole-slide images to per-patient risk scores. "
        "One subcommand per workflow stage.")
    parser.add_argument("--version", action="version", version=f"ghanet-pipeline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = sub.add_parser("demo-cohort", help="write the synthetic demo cohort (slides, clinical, signatures)")
    _add_demo_args(p)
    p.set_defaults(func=cmd_demo_cohort)

    p = sub.add_parser("demo-new-patients", help="write the demo's new patients (slides and slide sheet only)")
    _add_demo_args(p)
    p.set_defaults(func=cmd_demo_new_patients)

    p = sub.add_parser("demo-validation", help="write the demo's held-out labelled cohort (slides, sheet, outcomes)")
    _add_demo_args(p)
    p.set_defaults(func=cmd_demo_validation)

    p = sub.add_parser("segment", help="tissue contours (GeoJSON), QC PNG and stats of one slide")
    _add_slide_args(p)
    _add_stage_args(p)
    p.add_argument("--geojson", required=True)
    p.add_argument("--qc", required=True)
    p.add_argument("--stats", required=True)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("tile", help="tile coordinates (HDF5) and grid QC PNG of one slide")
    _add_slide_args(p)
    _add_stage_args(p)
    p.add_argument("--contours", required=True, help="GeoJSON written by `ghanet segment`")
    p.add_argument("--segment-stats", default=None,
                   help="stats JSON written by `ghanet segment`: take its level-0 mpp (instead of --mpp)")
    p.add_argument("--segment-qc", default=None,
                   help="QC image written by `ghanet segment`: the grid is drawn on it (else the slide is read again)")
    p.add_argument("--coords", required=True)
    p.add_argument("--qc", required=True)
    p.set_defaults(func=cmd_tile)

    p = sub.add_parser("extract", help="patch features (HDF5 `features` + `coords`) of one slide")
    _add_slide_args(p)
    _add_stage_args(p)
    p.add_argument("--coords", required=True, help="coords HDF5 written by `ghanet tile`")
    p.add_argument("--features", required=True, help="output HDF5")
    p.add_argument("--features-pt", default=None, help="also write the MCAT .pt tensor here")
    _add_device_args(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="tile-reading processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--slide-reader", choices=["auto", "device", "openslide"], default="auto",
                   help="auto: patches from the stored JPEG tiles where the file allows it, else OpenSlide; "
                        "device: those tiles decoded, assembled and resized on the job's device (nvJPEG on a GPU)")
    p.add_argument("--reader", choices=["threads", "processes"], default="threads",
                   help="tile readers run as threads (default) or forkserver processes")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("export-pt", help="a feature file as the MCAT/G-HANet .pt tensor (pt_files/<slide>.pt)")
    p.add_argument("--features", required=True, help="HDF5 written by `ghanet extract`")
    p.add_argument("--out", required=True)
    _add_slides_args(p)
    p.set_defaults(func=cmd_export_pt)

    p = sub.add_parser("splits", help="validated cohort table, exclusions and patient-level folds")
    _add_stage_args(p)
    p.add_argument("--clinical", required=True, help="MCAT-format clinical/genomic CSV")
    p.add_argument("--slide-sheet", default=None,
                   help="slide sheet (slide_id, case_id, path); none: the clinical table's slide_id column")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("genes", help="per-fold differential selection of each gene family's features")
    _add_stage_args(p)
    p.add_argument("--patients", required=True, help="patients.csv.gz written by `ghanet splits`")
    p.add_argument("--fold-csv", required=True, help="fold file (train, val columns)")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--signatures", default=None,
                   help="six-family signatures CSV (none: a survival-only cohort, time bins only)")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_genes)

    p = sub.add_parser("train", help="train one model on one fold; checkpoint, risks, log, loss curve")
    _add_stage_args(p)
    p.add_argument("--model", required=True, help="ghanet, abmil or snn")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--patients", required=True, help="patients.csv.gz written by `ghanet splits`")
    p.add_argument("--fold-csv", required=True, help="fold file (train, val columns)")
    p.add_argument("--selection", required=True, help="selection.json written by `ghanet genes`")
    p.add_argument("--scaler", required=True, help="scaler.csv written by `ghanet genes`")
    p.add_argument("--features-dir", required=True, help="folder of per-slide feature files")
    p.add_argument("--manifest", default=None,
                   help="the features' manifest: names the encoder of files that carry none (imported features)")
    p.add_argument("--splits-summary", default=None,
                   help="splits.json written by `ghanet splits` (the number of folds the checkpoint records)")
    p.add_argument("--out-dir", required=True)
    _add_device_args(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="out-of-fold C-index, time-dependent AUC, KM curves per model")
    _add_stage_args(p)
    p.add_argument("--model-dirs", nargs="+", required=True, help="results/models/<model>/fold_<k> folders")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="risk per patient from slides only, with every fold's model")
    _add_stage_args(p)
    p.add_argument("--slide-sheet", required=True, help="slide sheet of the new patients (slide_id, case_id, path[, mpp])")
    p.add_argument("--models-dir", required=True, help="results/models/<model> of a training run")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--features-dir", default=None,
                   help="features already extracted with the training settings (default: process the slides)")
    p.add_argument("--work-dir", default=None, help="where to segment/tile/extract (default: beside --out)")
    p.add_argument("--heatmaps-dir", default=None, help="also write attention heatmaps here")
    p.add_argument("--allow-other-mpp", action="store_true",
                   help="score slides scanned at another resolution than the training slides")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("validation-score", help="score an external validation cohort with every fold of one model")
    _add_stage_args(p)
    p.add_argument("--models-dir", required=True, help="results/models/<model> of a training run")
    p.add_argument("--slide-sheet", default=None, help="the validation cohort's slide sheet")
    p.add_argument("--clinical", default=None, help="without a sheet: the table whose slide_id column names the slides")
    p.add_argument("--features-dir", required=True, help="the cohort's feature files (ours, CLAM's, TRIDENT's, ...)")
    p.add_argument("--out", required=True, help="output CSV")
    p.set_defaults(func=cmd_validation_score)

    p = sub.add_parser("validate", help="evaluate the validation cohort's risks: C-index, td-AUC, KM, HR, calibration")
    _add_stage_args(p)
    p.add_argument("--risks", nargs="+", required=True, help="validation-score CSVs, one per model")
    p.add_argument("--clinical", required=True, help="the validation cohort's outcomes")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("heatmaps", help="attention heatmaps of one fold's held-out patients")
    _add_stage_args(p)
    p.add_argument("--model", required=True, help="model.pt of the fold")
    p.add_argument("--fold-csv", required=True)
    p.add_argument("--patients", required=True)
    p.add_argument("--slide-sheet", required=True)
    p.add_argument("--features-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_heatmaps)

    p = sub.add_parser("feature-manifest", help="one table of a cohort's feature files, checked to agree")
    p.add_argument("--features", nargs="*", default=[], help="our feature files")
    p.add_argument("--features-dir", default=None,
                   help="instead of --features: the folder of every cohort slide's file (ours, or those "
                        "cohort.features names), a slide list too long for a command line")
    p.add_argument("--slide-sheet", default=None, help="with --features-dir: the slides (else --clinical's)")
    p.add_argument("--clinical", default=None, help="with --features-dir and no sheet: MCAT table with slide_id")
    p.add_argument("--declared-encoder", default=None,
                   help="imported files: the encoder of those that carry no name (extract.encoder)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-lost-fraction", type=float, default=1.0,
                   help="stop when more than this fraction of the slides failed (cohort.max_lost_fraction)")
    p.set_defaults(func=cmd_feature_manifest)

    p = sub.add_parser("slide-report", help="cohort QC table: tissue, pieces and tiles per slide")
    p.add_argument("--stats", nargs="*", default=[], help="segment stats JSON files")
    p.add_argument("--coords", nargs="*", default=[], help="coords HDF5 files, same order")
    p.add_argument("--stats-pattern", default=None,
                   help="instead of --stats/--coords: the stats path with {slide}, for every slide of --sheets")
    p.add_argument("--coords-pattern", default=None, help="with --stats-pattern: the coords path with {slide}")
    p.add_argument("--features-pattern", default=None,
                   help="with --stats-pattern: the features path with {slide} (patches extraction left out)")
    p.add_argument("--sheets", nargs="*", default=[],
                   help="slide sheets whose case_id and extra columns (scanner, site, ...) the table carries")
    p.add_argument("--out", required=True)
    p.add_argument("--qc-images", nargs="*", default=[],
                   help="QC image paths with {slide} (segment's, tile's), shown side by side in the gallery")
    p.add_argument("--gallery-dir", default=None, help="write the QC contact sheets here")
    p.set_defaults(func=cmd_slide_report)

    p = sub.add_parser("init", help="write a slide sheet from a folder of slides, and a config naming it")
    p.add_argument("--slides", required=True, help="the folder of slides (searched recursively)")
    p.add_argument("--sheet", default="slides.csv", help="the sheet to write (paths relative to its folder)")
    p.add_argument("--config-out", default="config.yaml", help="the config to write")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("encoders", help="list the encoders and whether their weights are in the local cache")
    p.add_argument("config_file", nargs="?", default=None, help="a config.yaml whose extract.weights to check too")
    p.set_defaults(func=cmd_encoders)

    p = sub.add_parser("check-config", help="validate a config.yaml (and its slide sheet)")
    p.add_argument("config_file", nargs="?", default="config.yaml")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.command not in SLIDE_FILES:
            args.func(args)
        elif args.slides is not None:
            _run_slides(args)
        else:
            if getattr(args, "slide_id", "") is None or getattr(args, "slide", "") is None:
                raise GhanetError("give --slide and --slide-id, or --slides")
            _run_slide(args)
    except ChunkFailed as exc:  # each failed slide's log holds its error line; this one only counts them
        print(f"ghanet {args.command}: {exc}", file=sys.stderr)
        return 1
    except GhanetError as exc:
        print(f"ghanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug of ours: the traceback for a report, one line last
        _unexpected(args.command, exc, sys.stderr)
        return 1
    return 0


def _unexpected(command: str, exc: Exception, out) -> str:
    """An exception that is no GhanetError, written to `out` ending with one line; returns that line's
    reason. A dependency missing from the job's Python is the environment's fault and is said so,
    without a traceback; anything else is a bug of ours, with the traceback for a report."""
    import traceback

    from .errors import missing_module

    why = missing_module(exc)
    if why is None:
        traceback.print_exc(file=out)
        why = f"internal error ({type(exc).__name__}: {exc})"
        print(f"ghanet {command}: error: {why}; this is a bug in ghanet-pipeline, please report it with this log",
              file=out)
    else:
        print(f"ghanet {command}: error: {why}", file=out)
    return why


if __name__ == "__main__":
    sys.exit(main())
