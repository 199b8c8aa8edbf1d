"""Attention heatmaps of a G-HANet model on one slide.

Per slide: the morphology attention (the gated-attention weights E1) and each gene family's
attention (softmax over patches of the CAB's head-mean attention logits, the full map the top-k
genome-informed weights are cut from) overlaid on the slide at a set microns per pixel, smoothed
within the tissue, with a colour bar and a scale bar (`<slide>.heatmap.png`); each map's top tiles
at full resolution (`<slide>.top_tiles.jpg`). Raw scores are shown as attention x tiles in the bag
(1 = uniform), so a flat map looks flat; percentiles (rank within the slide) are the other choice.
The raw scores of every tile are exported too, as a CSV and as GeoJSON that QuPath opens (one
detection per tile, a measurement per map), so the attended regions can be checked on the slide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import commands, formats, plots, wsi

GLASS_SATURATION = 20  # out of 255: glass stays below it (the floor segmentation puts under Otsu's split too)
THUMB_PX = 1024  # long side of the overview where the slide's resolution is unknown (foreign features)
SCALE_BARS_UM = (50, 100, 200, 250, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class Settings:
    """The `heatmap` section: how the maps are drawn (see workflow/schemas/config.schema.yaml)."""

    mpp: float = 4.0
    max_side_px: int = 2048
    scale: str = "raw"  # raw: attention x tiles in the bag (1 = uniform); percentile: rank within the slide
    smooth: bool = True
    top_k: int = 8

    @classmethod
    def of(cls, section: dict | None) -> "Settings":
        return cls(**(section or {}))


@torch.no_grad()
def attention(module, bag: torch.Tensor, family_names: list[str]) -> dict[str, np.ndarray]:
    """{'morphology': (N,), <family>: (N,)} for one bag from a G-HANet module in eval mode."""
    out = module.eval()(bag)
    maps = {"morphology": out["morphology_attention"][0].cpu().numpy()}
    if "family_logits" in out:  # G-HANet; ABMIL has the morphology attention only
        fam = out["family_logits"].softmax(dim=-1).cpu().numpy()
        maps.update({name: fam[i] for i, name in enumerate(family_names)})
    return maps


def tile_geometry(attrs: dict, slide, slide_id: str, mpp0: float | None, tiling: dict | None = None,
                  patches_attrs: dict | None = None) -> dict:
    """The tiles' geometry as `render` and `montage` read it: `patch_size` pixels read at
    `patch_level`, `target_patch_size` shown, `patch_size_level0`, and the microns per pixel where
    known. Each writer says less than we do, so it is completed from what that writer does say:

    - ours: all of it;
    - TRIDENT (trident/IO.py coords_to_h5): `patch_size` at the target magnification and
      `patch_size_level0`, no level (read at level 0);
    - CLAM's create_patches_fp patch files (WholeSlideImage.process_contour): `patch_size` at
      `patch_level` and its `downsample`, given as `patches_attrs` where the user points at them;
    - CLAM's extract_features_fp feature files: nothing, so `tiling` (the `tile` section) says it:
      `patch_size` pixels at `target_mpp` on this slide of `mpp0` um/px.

    `slide` is the open slide (its level downsamples). Raises GhanetError naming what is missing."""
    from .errors import GhanetError

    if "patch_size_level0" in attrs and "patch_level" in attrs:  # ours
        return dict(attrs, level0_mpp=attrs.get("level0_mpp") or mpp0)
    if "patch_size_level0" in attrs:  # TRIDENT: read at level 0, shown at its target magnification
        ps0, shown = int(attrs["patch_size_level0"]), int(attrs["patch_size"])
    elif patches_attrs and "patch_level" in patches_attrs:  # CLAM's patch file
        level, size = int(patches_attrs["patch_level"]), int(patches_attrs["patch_size"])
        down = np.ravel(patches_attrs.get("downsample", slide.level_downsamples[level]))[0]
        ps0, shown = int(round(size * float(down))), size
    elif "patch_level" in attrs and "patch_size" in attrs:  # a CLAM patch file's attributes on the coords
        level, size = int(attrs["patch_level"]), int(attrs["patch_size"])
        ps0, shown = int(round(size * slide.level_downsamples[level])), size
    elif tiling and mpp0:  # CLAM's feature file: no attributes at all
        ps0, shown = int(round(tiling["patch_size"] * tiling["target_mpp"] / mpp0)), int(tiling["patch_size"])
    else:
        raise GhanetError(f"slide {slide_id}: its feature file says no patch size and the slide has no resolution; "
                          "give the sheet's mpp column (or cohort.default_mpp), or point cohort.patches at CLAM's "
                          "patches folder")
    mpp = {"level0_mpp": mpp0, "target_mpp": mpp0 * ps0 / shown} if mpp0 else {}
    return {**attrs, "patch_level": 0, "patch_size": ps0, "target_patch_size": shown, "patch_size_level0": ps0,
            **mpp}


def _percentile(v: np.ndarray) -> np.ndarray:
    if len(v) < 2:
        return np.ones_like(v, dtype=float)
    return v.argsort().argsort() / (len(v) - 1)


def overlay_mpp(level0_size: tuple[int, int], level0_mpp: float | None, settings: Settings) -> float | None:
    """The overlay's microns per pixel: the one asked for, coarser only where the slide would
    exceed max_side_px at it (None: the slide's resolution is unknown)."""
    if not level0_mpp:
        return None
    long_um = max(level0_size) * level0_mpp
    return max(settings.mpp, long_um / settings.max_side_px, level0_mpp)


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Tissue on the overview: stained pixels stand out from the glass in saturation (Otsu's split,
    never below a floor that unstained glass stays under), smoothed over a few pixels."""
    import cv2

    sat = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1], 5)
    split, _ = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (sat > max(split, GLASS_SATURATION)).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)


def tile_map(values: np.ndarray, coords: np.ndarray, ps0: int, shape: tuple[int, int], scale: float,
             smooth: bool, tissue: np.ndarray | None = None) -> np.ndarray:
    """The tiles' values on a (h, w) grid of `scale` pixels per level-0 pixel, NaN off the tiles and,
    given a `tissue` mask of the grid, off the tissue: a tile at the tissue's edge is part glass, and
    its glass is left clear. Smoothing is a normalised Gaussian blur (sigma half a tile) inside that
    footprint: values flow between neighbouring tiles but never onto glass, and a lone tile keeps its value."""
    import cv2

    h, w = shape
    acc, cover = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    for (x, y), v in zip(np.asarray(coords, float), values):
        x0, y0 = int(x * scale), int(y * scale)
        x1, y1 = max(x0 + 1, int(round((x + ps0) * scale))), max(y0 + 1, int(round((y + ps0) * scale)))
        acc[y0:y1, x0:x1] += v
        cover[y0:y1, x0:x1] += 1
    footprint = cover > 0
    if tissue is not None:
        footprint &= tissue
        acc[~footprint], cover[~footprint] = 0, 0  # glass gives nothing to the blur either
    if smooth:
        sigma = max(0.5, ps0 * scale / 2)
        acc, cover = (cv2.GaussianBlur(a, (0, 0), sigma) for a in (acc, cover))
    out = np.full((h, w), np.nan)
    out[footprint] = acc[footprint] / np.maximum(cover[footprint], 1e-6)
    return out


def _shown(values: np.ndarray, n_bag: int, settings: Settings) -> tuple[np.ndarray, str, float]:
    """The values drawn, the colour bar's label and its top (its bottom is 0)."""
    if settings.scale == "percentile":
        return _percentile(values), "percentile in slide", 1.0
    shown = values * n_bag  # attention weights sum to 1 over the bag: 1 is the uniform weight
    return shown, "attention / uniform", max(1.0, float(shown.max()))


def _scale_bar(ax, width_px: int, um_per_px: float) -> None:
    """A bar of a round length, about a fifth of the width, bottom left."""
    target = width_px * um_per_px / 5
    um = min(SCALE_BARS_UM, key=lambda b: abs(b - target))
    px = um / um_per_px
    x0, y0 = 0.04 * width_px, ax.get_ylim()[0] * 0.95
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=6, foreground="white")]  # readable over ink and tissue
    ax.plot([x0, x0 + px], [y0, y0], color="black", linewidth=3, solid_capstyle="butt", path_effects=halo)
    label = f"{um // 1000} mm" if um >= 1000 else f"{um} \u00b5m"
    ax.text(x0 + px / 2, y0 * 0.985, label, ha="center", va="bottom", fontsize=8,
            bbox=dict(facecolor="white", alpha=0.7, edgecolor="none", pad=1))


def render(slide_path, slide_id: str, coords: np.ndarray, attrs: dict, maps: dict[str, np.ndarray], out_png,
           settings: Settings, n_bag: int | None = None, title: str = "") -> None:
    """One panel per map over the slide at the overlay's resolution (one image pixel per figure
    pixel), tiles outside tissue left clear, a colour bar and a scale bar."""
    plt = plots.pyplot()

    ps0 = int(attrs.get("patch_size_level0") or attrs["patch_size"])
    slide = wsi.open_slide(slide_path, slide_id)
    try:
        mpp0 = attrs.get("level0_mpp")
        um_px = overlay_mpp(slide.dimensions, float(mpp0) if mpp0 else None, settings)
        size = (wsi.thumbnail_size(slide, THUMB_PX) if um_px is None else
                tuple(max(1, round(d * float(mpp0) / um_px)) for d in slide.dimensions))
        w0 = slide.dimensions[0]  # read first: a handle that met a corrupt tile answers nothing after
        thumb = wsi.read_rgb_at(slide, size, slide_id, slide_path)
        scale = thumb.shape[1] / w0
    finally:
        slide.close()
    h, w = thumb.shape[:2]
    tissue = tissue_mask(thumb)
    n = len(maps)
    cols = min(4, n)
    rows = -(-n // cols)
    dpi, pad_l, pad_r, pad_t, pad_b = 100, 0.1, 1.2, 0.45, 0.1  # inches around each panel
    pw, ph = w / dpi + pad_l + pad_r, h / dpi + pad_t + pad_b
    fig = plt.figure(figsize=(cols * pw, rows * ph + 0.5))
    fw, fh = fig.get_size_inches()
    resolution = f"{um_px:.3g} \u00b5m/px" if um_px else "resolution unknown"
    what = "raw attention (1 = uniform weight)" if settings.scale == "raw" else "attention percentile"
    for i, (name, values) in enumerate(maps.items()):
        r, c = divmod(i, cols)
        left, bottom = c * pw + pad_l, fh - 0.5 - (r + 1) * ph + pad_b
        ax = fig.add_axes((left / fw, bottom / fh, w / dpi / fw, h / dpi / fh))
        shown, label, top = _shown(np.asarray(values, float), n_bag or len(values), settings)
        ax.imshow(thumb)
        im = ax.imshow(tile_map(shown, coords, ps0, (h, w), scale, settings.smooth, tissue), cmap="jet", alpha=0.45,
                       vmin=0, vmax=top, interpolation="nearest")
        if um_px:
            _scale_bar(ax, w, um_px)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        cax = fig.add_axes(((left + w / dpi + 0.1) / fw, bottom / fh, 0.12 / fw, h / dpi / fh))
        cax.tick_params(labelsize=8)
        fig.colorbar(im, cax=cax).set_label(label, fontsize=8)
    fig.suptitle(f"{title or slide_id}: {what} at {resolution}", y=1 - 0.15 / fh)
    plots.save_figure(fig, out_png, dpi=dpi)


def montage(slide_path, slide_id: str, coords: np.ndarray, coords_attrs: dict, maps: dict[str, np.ndarray],
            out_path, k: int = 8) -> None:
    """Each map's k highest-attention tiles, one row per map, at full resolution: each tile as the
    encoder saw it (target_patch_size pixels at the tiling's microns per pixel)."""
    import cv2
    plt = plots.pyplot()

    level = int(coords_attrs["patch_level"])
    size, px = formats.tile_sizes(coords_attrs)
    k = max(1, min(k, len(coords)))
    gap = 4
    step = px + gap
    slide = wsi.open_slide(slide_path, slide_id)
    try:
        grid = np.full((len(maps) * step - gap, k * step - gap, 3), 255, np.uint8)
        for r, values in enumerate(maps.values()):
            for c, i in enumerate(np.argsort(-np.asarray(values))[:k]):
                rgba = np.asarray(slide.read_region((int(coords[i, 0]), int(coords[i, 1])), level, (size, size)))
                tile = wsi.rgba_to_rgb(rgba)
                if size != px:
                    tile = cv2.resize(tile, (px, px), interpolation=cv2.INTER_AREA)
                grid[r * step:r * step + px, c * step:c * step + px] = tile
    finally:
        slide.close()
    dpi, pad_l, pad_t = 100, 2.4, 0.5
    gh, gw = grid.shape[:2]
    fig = plt.figure(figsize=(gw / dpi + pad_l + 0.1, gh / dpi + pad_t + 0.3))
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((pad_l / fw, 0.3 / fh, gw / dpi / fw, gh / dpi / fh))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([r * step + px / 2 for r in range(len(maps))], list(maps), fontsize=9)
    ax.set_xticks([c * step + px / 2 for c in range(k)], [f"#{c + 1}" for c in range(k)], fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    mpp = coords_attrs.get("target_mpp")
    at = f", {px} px at {float(mpp):g} \u00b5m/px" if mpp else ""
    ax.set_title(f"{slide_id}: top-{k} tiles per attention map{at}", fontsize=10)
    plots.save_figure(fig, out_path, dpi=dpi)


def export_tiles(slide_id: str, coords: np.ndarray, ps0: int, maps: dict[str, np.ndarray], out_dir) -> list[str]:
    """`<slide>.attention.csv` (tile x, y, size in level-0 px and each map's raw score and
    within-slide percentile) and `<slide>.attention.geojson` (one QuPath detection per tile)."""
    import csv
    import json
    from pathlib import Path

    from .io import atomic_path

    out = Path(out_dir)
    names = list(maps)
    pct = {n: _percentile(np.asarray(v, float)) for n, v in maps.items()}
    csv_path, geo_path = out / f"{slide_id}.attention.csv", out / f"{slide_id}.attention.geojson"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide_id", "x", "y", "size_level0", *names, *(f"{n}_percentile" for n in names)])
        for i, (x, y) in enumerate(np.asarray(coords)):
            w.writerow([slide_id, int(x), int(y), ps0, *(f"{float(maps[n][i]):.6g}" for n in names),
                        *(f"{float(pct[n][i]):.4f}" for n in names)])
    features = []
    for i, (x, y) in enumerate(np.asarray(coords).tolist()):
        ring = [[x, y], [x + ps0, y], [x + ps0, y + ps0], [x, y + ps0], [x, y]]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": {"objectType": "detection", "name": f"tile {i}",
                                        "measurements": {n: float(maps[n][i]) for n in names}}})
    with atomic_path(geo_path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return [str(csv_path), str(geo_path)]


def render_patient(modules: list, family_names: list[str], slides: list[dict], out_dir,
                   settings: Settings = Settings()) -> list[str]:
    """Heatmaps, top tiles and tile exports of one patient's slides. `slides`: dicts with slide_id,
    path, features, coords and coords attrs, in bag order. The bag is all slides together (as the
    model saw it); with several models (folds) each map is their mean. Returns the files written."""
    from pathlib import Path

    bag = torch.from_numpy(np.concatenate([s["features"] for s in slides]))
    per_model = [attention(m, bag, family_names) for m in modules]
    maps = {name: np.mean([pm[name] for pm in per_model], axis=0) for name in per_model[0]
            if all(name in pm for pm in per_model)}
    out = Path(out_dir)
    written, start = [], 0
    for s in slides:
        n = len(s["features"])
        part = {name: v[start:start + n] for name, v in maps.items()}
        start += n
        if n == 0:
            continue
        ps0 = int(s["attrs"].get("patch_size_level0") or s["attrs"]["patch_size"])
        heat, top = out / f"{s['slide_id']}.heatmap.png", out / f"{s['slide_id']}.top_tiles.jpg"
        render(s["path"], s["slide_id"], s["coords"], s["attrs"], part, heat, settings, n_bag=len(bag),
               title=f"{s['slide_id']} ({len(modules)} model{'s' if len(modules) > 1 else ''})")
        montage(s["path"], s["slide_id"], s["coords"], s["attrs"], part, top, k=settings.top_k)
        written += [str(heat), str(top), *export_tiles(s["slide_id"], s["coords"], ps0, part, out)]
    return written


def write_gallery(out_dir) -> list:
    """Contact sheets of the heatmaps in `out_dir` (`gallery_001.jpg`, ...): what the report shows,
    a few pages for any number of slides; the full-size heatmaps stay beside them."""
    from pathlib import Path

    from .gallery import contact_sheets

    maps = sorted(Path(out_dir).glob("*.heatmap.png"))
    items = [(p.name[: -len(".heatmap.png")], [p]) for p in maps]
    return contact_sheets(items, out_dir, name="gallery", image_px=(400, 400), columns=3, per_page=18)


# ---------------------------------------------------------------------------- command


def _no_heatmap(part: dict) -> str | None:
    """Why a slide's heatmap cannot be drawn: imported features may have no coords in pixels
    (MCAT's .pt, STAMP's microns), or their slide may not be here."""
    from pathlib import Path

    from .features import FORMATS

    if part["coords"] is None:
        kind = FORMATS[part["attrs"].get("format", "ghanet")]
        return f"slide {part['slide_id']}: its feature file ({kind}) has no coords in level-0 pixels"
    if not part["path"] or not Path(part["path"]).is_file() and not Path(part["path"]).is_dir():
        return f"slide {part['slide_id']}: slide file {part['path']} not found"
    return None


def with_geometry(part: dict, row: dict, cfg: dict) -> None:
    """The part's tile geometry completed from the slide and the settings (another tool's file may
    carry none: tile_geometry); a GhanetError says why it cannot be."""
    from pathlib import Path

    from .errors import GhanetError
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
        part["attrs"] = tile_geometry(attrs, slide, part["slide_id"], mpp0, cfg["tile"], patches_attrs)
    finally:
        slide.close()


def _arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--model", required=True, help="model.pt of the fold")
    p.add_argument("--fold-csv", required=True)
    p.add_argument("--patients", required=True)
    p.add_argument("--slide-sheet", required=True)
    p.add_argument("--features-dir", required=True)
    p.add_argument("--out-dir", required=True)


def _run(args) -> None:
    import logging
    from pathlib import Path

    from . import features, models, splits, train
    from .errors import GhanetError
    from .sheet import read_slides

    log = logging.getLogger("ghanet")
    cfg = commands.sections(args)
    settings = Settings.of(cfg["heatmap"])
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
                with_geometry(part, rows[part["slide_id"]], cfg)
            except GhanetError as exc:
                why = str(exc)
                break
        if why:
            skipped[case_id] = why
            log.warning("heatmap of patient %s skipped: %s", case_id, why)
        elif sum(len(p["features"]) for p in parts):
            render_patient([ckpt["module"]], list(ckpt["families"]), parts, args.out_dir, settings)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    write_gallery(args.out_dir)
    log.info("heatmaps of the %d held-out patients of fold %d in %s%s", len(val_ids) - len(skipped), ckpt["fold"],
             args.out_dir, f" ({len(skipped)} skipped, each named above)" if skipped else "")


COMMANDS = {"heatmaps": commands.Command(_arguments, _run)}
