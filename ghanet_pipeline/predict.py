"""Stage `predict`: risk scores for patients who have slides and nothing else.

Every fold's checkpoint of one trained model is applied to each patient's bag (all slides
together); the ensemble risk is the mean over folds. Risk groups use the mean over folds of the
cut-offs each fold fixed on its training patients. Slides must have been processed with the
settings the models were trained with: the encoder identity recorded in each feature file is
checked against the checkpoints, and a slide whose tiles would show another resolution than the
training tiles (a scan coarser than the tiles, whose tiles are upsampled) is refused unless
`allow_other_mpp`. Every slide's header is checked before anything is extracted, and a patient
who cannot be scored gets a `status`/`reason` row; the others are scored.

Two entry points: `run` (a slide sheet; segments, tiles and extracts the slides itself with the
checkpoints' settings unless given a folder of features) and `predict_slide` (one slide, Python).
`score_cohort` scores an external validation cohort the same way, for the `validate` stage.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import commands, devices, features, heatmap, models, train
from .errors import GhanetError
from .io import atomic_path
from .risk import risk_group
from .sheet import cohort_slides

log = logging.getLogger("ghanet.predict")
ENCODER_KEYS = ("encoder", "weights_sha256", "patch_size", "target_mpp")


def load_models(models_dir) -> list[dict]:
    """Every fold's checkpoint of one model, in fold order; a missing fold is an error."""
    d = Path(models_dir)
    paths = sorted(d.glob("fold_*/model.pt"))
    if not paths:
        raise GhanetError(f"model directory {d} has no fold_<k>/model.pt; point it at results/models/<model> "
                          "of a finished training run")
    ckpts = {c["fold"]: c for c in map(train.load_checkpoint, paths)}
    first = ckpts[min(ckpts)]
    k = first["config"].get("splits", {}).get("folds", len(ckpts))
    missing = [f for f in range(k) if f not in ckpts]
    if missing:
        raise GhanetError(f"model directory {d} has no fold {missing[0]} ({d}/fold_{missing[0]}/model.pt) of the "
                          f"{k} it was trained with; rerun its training, or copy the complete model directory")
    if not models.spec(first["model"]).predicts:
        raise GhanetError(f"{d} holds {first['model']} models, which need genomics at inference; predict takes "
                          f"a model that scores slides alone ({', '.join(models.having('predicts'))})")
    for c in ckpts.values():
        if c["model"] != first["model"] or c["encoder"] != first["encoder"]:
            raise GhanetError(f"{d}/fold_{c['fold']} was trained with another model or encoder than fold "
                              f"{first['fold']}; the directory mixes runs")
    return [ckpts[f] for f in range(k)]


def _tile_resolution(level0_mpp: float, target_mpp: float) -> float:
    """Microns per pixel of what a tile actually shows: the target, or the scan where it is coarser
    (its tiles are then upsampled from fewer pixels)."""
    return max(float(level0_mpp), float(target_mpp))


def check_resolution(slide_id: str, level0_mpp: float | None, ckpt: dict, allow_other_mpp: bool) -> None:
    """Refuse a slide whose tiles would show another resolution than every training slide's: a
    40x slide is fine for models trained on 20x tiles (its tiles are read at 20x too); a 10x slide
    is not (its "20x" tiles are upsampled), unless `allow_other_mpp`."""
    target = (ckpt["encoder"] or {}).get("target_mpp") or ckpt["config"].get("tile", {}).get("target_mpp")
    mpps = ckpt.get("slide_mpps") or []
    if allow_other_mpp or level0_mpp is None or not target or not mpps:
        return
    tol = ckpt["config"].get("tile", {}).get("mpp_tolerance", 0.05)
    mine = _tile_resolution(level0_mpp, target)
    trained = sorted({round(_tile_resolution(m, target), 4) for m in mpps})
    if not any(abs(mine / t - 1) <= tol for t in trained):
        raise GhanetError(f"slide {slide_id} is scanned at {level0_mpp:g} um/px, so its tiles show {mine:g} um/px; "
                          f"the models were trained on tiles showing {', '.join(f'{t:g}' for t in trained)} um/px "
                          f"(slides at {', '.join(f'{m:g}' for m in mpps)} um/px); set predict.allow_other_mpp: "
                          "true (--allow-other-mpp) to score it anyway")


def check_slide(slide_id: str, attrs: dict, ckpt: dict, allow_other_mpp: bool) -> None:
    want = ckpt["encoder"] or {}
    for key in ENCODER_KEYS:
        if key in want and key in attrs:
            a, b = attrs[key], want[key]
            same = np.isclose(float(a), float(b)) if isinstance(b, (int, float)) else a == b
            if not same:
                raise GhanetError(f"slide {slide_id}: features made with {key} = {a}, the models with {b}; "
                                  "process the slide with the training run's segment/tile/extract settings")
    check_resolution(slide_id, attrs.get("level0_mpp"), ckpt, allow_other_mpp)


def cutoffs(ckpts: list[dict]) -> dict:
    """The ensemble's risk-group cut-offs: the mean over folds of those each fold fixed on its
    training patients (never anything of the patients scored)."""
    cuts = [c["risk_cutoffs"] for c in ckpts]
    return {"median": float(np.mean([c["median"] for c in cuts])),
            "tertiles": np.mean([c["tertiles"] for c in cuts], axis=0).tolist()}


def middle_bin_edge(ckpts: list[dict]) -> float:
    """The models' middle time-bin edge in months (mean over folds), fixed on the training
    patients: their median event time for an even number of bins."""
    return float(np.mean([c["bin_edges"][len(c["bin_edges"]) // 2] for c in ckpts]))


def survival_at(survival: np.ndarray, edges, months: float) -> float:
    """A discrete-time model's survival at `months`: exact at each bin's end (S_k = P(T beyond bin
    k)), linear between the ends, 1 before the first bin (as at time 0)."""
    return float(np.interp(months, np.asarray(edges, float), np.concatenate([[1.0], survival])))


def score(slides: pd.DataFrame, features_dir, ckpts: list[dict], *, scheme: str = "median",
          allow_other_mpp: bool = False, heatmaps_dir=None, heatmap_settings: heatmap.Settings | None = None,
          failed: dict | None = None, survival_months: float | None = None) -> pd.DataFrame:
    """One row per patient of `slides` (slide_id, case_id[, path]). `failed`: slide_id -> reason for
    slides that could not be processed; their patients get no score and the reason.
    `survival_months`: also the ensemble's predicted survival at that time (`predicted_survival`,
    the mean over folds), what a calibration compares with the observed."""
    failed = failed or {}
    modules = [c["module"] for c in ckpts]
    families = list(ckpts[0]["families"])
    attention = models.spec(ckpts[0]["model"]).attention  # heatmaps need patch attention
    if heatmaps_dir is not None and not attention:
        log.warning("no heatmaps: %s gives no patch attention", ckpts[0]["model"])
    cut = cutoffs(ckpts)
    rows = []
    for case_id, group in slides.groupby("case_id", sort=True):
        sids = sorted(group.slide_id)  # the order the training bags were built in
        row = {"case_id": case_id, "risk": np.nan, "risk_group": "", "n_slides": len(sids), "n_tiles": 0,
               **{f"risk_fold_{c['fold']}": np.nan for c in ckpts},
               **({"predicted_survival": np.nan} if survival_months is not None else {}), "status": "ok", "reason": ""}
        bad = [s for s in sids if s in failed]
        if bad:
            rows.append(dict(row, status="failed", reason=f"slide {bad[0]}: {failed[bad[0]]}"))
            continue
        try:  # one patient's bad slide costs that patient's score, not everyone's
            parts = _patient_parts(group, sids, features_dir, ckpts[0], allow_other_mpp)
        except GhanetError as exc:
            rows.append(dict(row, status="failed", reason=str(exc)))
            continue
        n = sum(len(p["features"]) for p in parts)
        row["n_tiles"] = n
        if n == 0:
            rows.append(dict(row, status="no tiles", reason=f"no tissue tile in {', '.join(sids)}; see the "
                             "slide's segmentation QC image (no score is given)"))
            continue
        bag = torch.from_numpy(np.concatenate([p["features"] for p in parts]))
        with torch.no_grad():
            outs = [m(bag) for m in modules]
        risks = [float(o["risk"][0]) for o in outs]
        for c, r in zip(ckpts, risks):
            row[f"risk_fold_{c['fold']}"] = r
        row["risk"] = float(np.mean(risks))
        if survival_months is not None:
            at = [survival_at(o["survival"][0].numpy(), c["bin_edges"], survival_months) for o, c in zip(outs, ckpts)]
            row["predicted_survival"] = float(np.mean(at))
        row["risk_group"] = str(risk_group([row["risk"]], cut, scheme)[0])
        rows.append(row)
        if heatmaps_dir is not None and attention and all(p["path"] for p in parts):
            heatmap.render_patient(modules, families, parts, heatmaps_dir, heatmap_settings or heatmap.Settings())
    return pd.DataFrame(rows)


def _patient_parts(group: pd.DataFrame, sids: list[str], features_dir, ckpt: dict, allow_other_mpp: bool) -> list:
    parts = []
    for sid in sids:
        fpath = features.feature_path(features_dir, sid)
        feats, coords, attrs = features.read_features(fpath)
        if attrs.get("status") == "failed":  # recorded upstream (cohort.on_slide_error: skip): its first failure
            raise GhanetError(f"slide {sid} failed at {attrs.get('failed_stage') or 'extract'}: {attrs.get('reason', '')}")
        check_slide(sid, attrs, ckpt, allow_other_mpp)
        if len(feats) and ckpt["model_args"]["in_dim"] != feats.shape[1]:
            raise GhanetError(f"slide {sid}: {feats.shape[1]}-d features, the models take "
                              f"{ckpt['model_args']['in_dim']}-d; extract with the training encoder")
        path = group.set_index("slide_id").at[sid, "path"] if "path" in group else None
        parts.append({"slide_id": sid, "path": path, "features": feats, "coords": coords,
                      "attrs": features.feature_coords_attrs(fpath, attrs)})
    return parts


def precheck(sheet: pd.DataFrame, ckpt: dict, allow_other_mpp: bool) -> dict:
    """Every slide's header before any extraction: slide_id -> reason for those that cannot be
    scored (missing, unreadable, no plausible resolution, or a resolution the models never saw)."""
    from . import wsi

    mpp_range = ckpt["config"].get("cohort", {}).get("mpp_range", wsi.MPP_RANGE)
    failed = {}
    for row in sheet.itertuples():
        mpp = getattr(row, "mpp", None)
        try:
            slide = wsi.open_slide(row.path, row.slide_id)
            try:
                mpp0, _ = wsi.resolve_mpp(slide, row.slide_id, None if mpp is None or mpp != mpp else float(mpp),
                                          None, mpp_range)
            finally:
                slide.close()
            check_resolution(row.slide_id, mpp0, ckpt, allow_other_mpp)
        except GhanetError as exc:
            failed[row.slide_id] = str(exc)
    return failed


def _process_slides(sheet: pd.DataFrame, sections: dict, work: Path, device: str, threads: int | None,
                    failed: dict) -> dict:
    """Segment, tile and extract each slide not already `failed` with the checkpoints' settings;
    returns `failed` with the slides that failed here added."""
    from . import extract, segment, tile

    failed = dict(failed)
    todo = sheet[~sheet.slide_id.isin(list(failed))]
    if len(todo):
        device = devices.resolve(device, True, "predict")  # once: one GPU for all the slides
    tile_params = dict(sections["tile"], on_empty="record")  # a slide without tissue gets a reason, not a crash
    for row in todo.itertuples():
        sid, mpp = row.slide_id, getattr(row, "mpp", None)
        mpp = None if mpp is None or mpp != mpp else float(mpp)
        try:
            segment.run(row.path, sid, sections["segment"], geojson=work / f"{sid}.geojson",
                        qc_png=work / f"{sid}.qc.png", stats_json=work / f"{sid}.stats.json", sheet_mpp=mpp,
                        mpp_range=sections.get("cohort", {}).get("mpp_range"))
            tile.run(row.path, sid, tile_params, contours=work / f"{sid}.geojson", coords_h5=work / f"{sid}.coords.h5",
                     qc_png=work / f"{sid}.tiles.png", segment_stats=work / f"{sid}.stats.json",
                     segment_qc=work / f"{sid}.qc.png")
            extract.run(row.path, sid, sections["extract"], coords_h5=work / f"{sid}.coords.h5",
                        features_h5=work / "features" / f"{sid}.h5", device=device, threads=threads)
        except GhanetError as exc:
            log.error("%s", exc)
            failed[sid] = str(exc)
    return failed


def run(slide_sheet, models_dir, *, out_csv, features_dir=None, work_dir=None, scheme: str = "median",
        allow_other_mpp: bool = False, heatmaps_dir=None, heatmap_settings: heatmap.Settings | None = None,
        device: str = "auto", threads: int | None = None) -> pd.DataFrame:
    from .sheet import read_slides

    ckpts = load_models(models_dir)
    sheet = pd.DataFrame(list(read_slides(slide_sheet).values()), columns=["slide_id", "case_id", "path", "mpp"])
    failed = {}
    if features_dir is None:
        work = Path(work_dir or Path(out_csv).parent / "work")
        failed = precheck(sheet, ckpts[0], allow_other_mpp)
        failed = _process_slides(sheet, ckpts[0]["config"], work, device, threads, failed)
        features_dir = work / "features"
    table = score(sheet, features_dir, ckpts, scheme=scheme, allow_other_mpp=allow_other_mpp,
                  heatmaps_dir=heatmaps_dir, heatmap_settings=heatmap_settings, failed=failed)
    if heatmaps_dir is not None:
        Path(heatmaps_dir).mkdir(parents=True, exist_ok=True)
        heatmap.write_gallery(heatmaps_dir)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    log.info("predict: %d patients scored, %d without a score", int((table.status == "ok").sum()),
             int((table.status != "ok").sum()))
    return table


def predict_slide(slide_path, models_dir, *, slide_id: str | None = None, mpp: float | None = None,
                  scheme: str = "median", allow_other_mpp: bool = False, device: str = "auto",
                  heatmaps_dir=None) -> dict:
    """Score one slide (as one patient) with every fold of a trained model; returns the CSV row as a dict."""
    slide_id = slide_id or Path(slide_path).stem
    sheet = pd.DataFrame({"slide_id": [slide_id], "case_id": [slide_id], "path": [str(slide_path)], "mpp": [mpp]})
    ckpts = load_models(models_dir)
    with tempfile.TemporaryDirectory(prefix="ghanet-predict-") as tmp:
        failed = precheck(sheet, ckpts[0], allow_other_mpp)
        failed = _process_slides(sheet, ckpts[0]["config"], Path(tmp), device, None, failed)
        table = score(sheet, Path(tmp) / "features", ckpts, scheme=scheme, allow_other_mpp=allow_other_mpp,
                      heatmaps_dir=heatmaps_dir, failed=failed)
    return table.iloc[0].to_dict()


def check_disjoint(case_ids, ckpts: list[dict]) -> None:
    """Refuse validation patients the models saw: any fold's training or held-out patients."""
    seen = {str(c) for ck in ckpts for c in list(ck.get("train_ids") or []) + list(ck.get("val_ids") or [])}
    both = sorted(set(map(str, case_ids)) & seen)
    if both:
        shown = ", ".join(both[:10]) + (f" and {len(both) - 10} more" if len(both) > 10 else "")
        raise GhanetError(f"validation cohort: {len(both)} patient(s) are in the training cohort ({shown}); an "
                          "external validation is on patients the models never saw: remove them from the "
                          "validation cohort")


def score_cohort(models_dir, slides: pd.DataFrame, features_dir, *, scheme: str = "median",
                 allow_other_mpp: bool = False, calibration_months: float | None = None, out_csv=None) -> pd.DataFrame:
    """A validation cohort scored by one model's folds: per patient the ensemble risk, the risk
    group at the training cut-offs, the predicted survival at the calibration time (default: the
    models' middle time-bin edge), the cut-offs used, and status/reason; written to `out_csv`.
    Raises when the cohort overlaps the training cohort or no patient could be scored."""
    ckpts = load_models(models_dir)
    check_disjoint(slides.case_id, ckpts)
    months = calibration_months or middle_bin_edge(ckpts)
    table = score(slides, features_dir, ckpts, scheme=scheme, allow_other_mpp=allow_other_mpp, survival_months=months)
    cut = cutoffs(ckpts)
    table.insert(0, "model", ckpts[0]["model"])
    table = table.assign(calibration_months=months, cutoff_median=cut["median"],
                         cutoff_tertile_1=cut["tertiles"][0], cutoff_tertile_2=cut["tertiles"][1])
    if not table.status.eq("ok").any():
        first = table.iloc[0]
        raise GhanetError(f"validation cohort: no patient could be scored by {ckpts[0]['model']} "
                          f"({first.case_id}: {first.reason})")
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            table.to_csv(tmp, index=False)
    log.info("validation: %s scored %d of %d patients", table.model[0], int(table.status.eq("ok").sum()), len(table))
    return table


# ---------------------------------------------------------------------------- commands


def _arguments(p) -> None:
    commands.stage_args(p)
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


def _run(args) -> None:
    cfg = commands.sections(args)
    run(args.slide_sheet, args.models_dir, out_csv=args.out, features_dir=args.features_dir, work_dir=args.work_dir,
        scheme=cfg["evaluate"]["risk_groups"], allow_other_mpp=args.allow_other_mpp or cfg["predict"]["allow_other_mpp"],
        heatmaps_dir=args.heatmaps_dir, heatmap_settings=heatmap.Settings.of(cfg["heatmap"]), device=args.device,
        threads=args.threads)


def _score_arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--models-dir", required=True, help="results/models/<model> of a training run")
    p.add_argument("--slide-sheet", default=None, help="the validation cohort's slide sheet")
    p.add_argument("--clinical", default=None, help="without a sheet: the table whose slide_id column names the slides")
    p.add_argument("--features-dir", required=True, help="the cohort's feature files (ours, CLAM's, TRIDENT's, ...)")
    p.add_argument("--out", required=True, help="output CSV")


def _score(args) -> None:
    if not (args.slide_sheet or args.clinical):
        raise GhanetError("give --slide-sheet, or --clinical whose slide_id column names the feature files")
    cfg = commands.sections(args)
    # the validation cohort's slides (slide_id, case_id, path): its sheet's, or without one (features
    # given) the clinical table's slide_id column
    rows = cohort_slides(args.slide_sheet, args.clinical)
    slides = pd.DataFrame([{k: r[k] for k in ("slide_id", "case_id", "path")} for r in rows.values()])
    score_cohort(args.models_dir, slides, args.features_dir, out_csv=args.out, scheme=cfg["evaluate"]["risk_groups"],
                 allow_other_mpp=cfg["predict"]["allow_other_mpp"],
                 calibration_months=cfg["validation"]["calibration_months"])


COMMANDS = {"predict": commands.Command(_arguments, _run),
            "validation-score": commands.Command(_score_arguments, _score)}
