"""Attention heatmaps of a G-HANet model on one slide.

Two PNGs per slide: the morphology attention (the gated-attention weights E1) and each gene
family's attention (softmax over patches of the CAB's head-mean attention logits, the full map the
top-k genome-informed weights are cut from) overlaid on the thumbnail with a colour bar; and a
montage of each family's top-k tiles. Values are shown as percentiles within the slide, so maps
of bags of different sizes read alike. The raw scores of every tile are exported too, as a CSV and
as GeoJSON that QuPath opens (one detection per tile, a measurement per map), so the attended
regions can be checked on the slide at full resolution.
"""

from __future__ import annotations

import numpy as np
import torch

from . import plots, wsi

THUMB_PX = 1024  # long side of the thumbnail


@torch.no_grad()
def attention(module, bag: torch.Tensor, family_names: list[str]) -> dict[str, np.ndarray]:
    """{'morphology': (N,), <family>: (N,)} for one bag from a G-HANet module in eval mode."""
    out = module.eval()(bag)
    maps = {"morphology": out["morphology_attention"][0].cpu().numpy()}
    if "family_logits" in out:  # G-HANet; ABMIL has the morphology attention only
        fam = out["family_logits"].softmax(dim=-1).cpu().numpy()
        maps.update({name: fam[i] for i, name in enumerate(family_names)})
    return maps


def _percentile(v: np.ndarray) -> np.ndarray:
    if len(v) < 2:
        return np.ones_like(v, dtype=float)
    return v.argsort().argsort() / (len(v) - 1)


def _thumbnail(slide, slide_id, path):
    rgb = wsi.read_rgb_at(slide, wsi.thumbnail_size(slide, THUMB_PX), slide_id, path)
    return rgb, rgb.shape[1] / slide.dimensions[0]


def render(slide_path, slide_id: str, coords: np.ndarray, patch_size_level0: int, maps: dict[str, np.ndarray],
           out_png, title: str = "") -> None:
    """One panel per map: attention percentile over the thumbnail, tiles outside tissue left clear."""
    plt = plots.pyplot()

    slide = wsi.open_slide(slide_path, slide_id)
    try:
        thumb, scale = _thumbnail(slide, slide_id, slide_path)
    finally:
        slide.close()
    h, w = thumb.shape[:2]
    n = len(maps)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows * h / w + 0.6), squeeze=False)
    side = max(1, round(patch_size_level0 * scale))
    xy = np.floor(np.asarray(coords, float) * scale).astype(int)
    for ax, (name, values) in zip(axes.flat, maps.items()):
        canvas = np.full((h, w), np.nan)
        for (x, y), v in zip(xy, _percentile(np.asarray(values, float))):
            canvas[y: y + side, x: x + side] = v
        ax.imshow(thumb)
        im = ax.imshow(canvas, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.035, pad=0.02, label="attention percentile")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title or slide_id)
    fig.tight_layout()
    plots.save_png(fig, out_png, dpi=90)


def montage(slide_path, slide_id: str, coords: np.ndarray, coords_attrs: dict, maps: dict[str, np.ndarray],
            out_png, k: int = 8, tile_px: int = 96) -> None:
    """Each map's k highest-attention tiles, one row per map."""
    import cv2
    plt = plots.pyplot()

    level = int(coords_attrs["patch_level"])
    size = int(coords_attrs.get("read_size") or coords_attrs["patch_size"])
    k = max(1, min(k, len(coords)))
    slide = wsi.open_slide(slide_path, slide_id)
    try:
        grid = np.full((len(maps) * tile_px, k * tile_px, 3), 255, np.uint8)
        for r, values in enumerate(maps.values()):
            for c, i in enumerate(np.argsort(-np.asarray(values))[:k]):
                rgba = np.asarray(slide.read_region((int(coords[i, 0]), int(coords[i, 1])), level, (size, size)))
                tile = cv2.resize(wsi.rgba_to_rgb(rgba), (tile_px, tile_px), interpolation=cv2.INTER_AREA)
                grid[r * tile_px:(r + 1) * tile_px, c * tile_px:(c + 1) * tile_px] = tile
    finally:
        slide.close()
    fig, ax = plt.subplots(figsize=(k * 1.3 + 2.6, len(maps) * 1.3 + 0.6))
    ax.imshow(grid)
    ax.set_yticks([(r + 0.5) * tile_px for r in range(len(maps))], list(maps), fontsize=8)
    ax.set_xticks([(c + 0.5) * tile_px for c in range(k)], [f"#{c + 1}" for c in range(k)], fontsize=8)
    ax.set_title(f"{slide_id}: top-{k} tiles per attention map")
    fig.tight_layout()
    plots.save_png(fig, out_png, dpi=90)


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


def render_patient(modules: list, family_names: list[str], slides: list[dict], out_dir, k: int = 8) -> list[str]:
    """Heatmaps and montages of one patient's slides. `slides`: dicts with slide_id, path, features,
    coords and coords attrs, in bag order. The bag is all slides together (as the model saw it);
    with several models (folds) each map is their mean. Returns the PNGs written."""
    from pathlib import Path

    bag = torch.from_numpy(np.concatenate([s["features"] for s in slides]))
    per_model = [attention(m, bag, family_names) for m in modules]
    maps = {name: np.mean([pm[name] for pm in per_model], axis=0) for name in per_model[0]
            if all(name in pm for pm in per_model)}
    written, start = [], 0
    for s in slides:
        n = len(s["features"])
        part = {name: v[start:start + n] for name, v in maps.items()}
        start += n
        if n == 0:
            continue
        ps0 = int(s["attrs"].get("patch_size_level0") or s["attrs"]["patch_size"])
        out = Path(out_dir)
        render(s["path"], s["slide_id"], s["coords"], ps0, part, out / f"{s['slide_id']}.heatmap.png",
               title=f"{s['slide_id']} ({len(modules)} model{'s' if len(modules) > 1 else ''})")
        montage(s["path"], s["slide_id"], s["coords"], s["attrs"], part, out / f"{s['slide_id']}.top_tiles.png", k=k)
        written += [str(out / f"{s['slide_id']}.heatmap.png"), str(out / f"{s['slide_id']}.top_tiles.png")]
        written += export_tiles(s["slide_id"], s["coords"], ps0, part, out)
    return written
