"""Contact sheets: many images as a few pages of labelled thumbnails.

The HTML report embeds every file it shows; one QC thumbnail and one heatmap per slide would make
a 1,000-slide cohort's report gigabytes. The report shows these pages instead (a slide's images
side by side in one cell, its id above them), and the full-size images stay in the results
folder, which the caption names.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import formats

LABEL_PX = 22  # the text line above each cell


def _fit(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    s = min(w / rgb.shape[1], h / rgb.shape[0])
    size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def _read(path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def contact_sheets(items: list[tuple[str, list]], out_dir, *, name: str = "gallery", image_px: tuple = (200, 200),
                   columns: int = 3, per_page: int = 24) -> list[Path]:
    """Pages `<name>_001.jpg`, ... of `items` (label, image paths): each image fitted into
    `image_px` (w, h), a cell's images side by side, `columns` cells a row, each row as tall as
    its tallest image; a missing or unreadable image leaves its place blank. Returns the pages
    written (none for no items)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_cell = max((len(paths) for _, paths in items), default=1)
    cw = image_px[0] * per_cell + 4 * (per_cell - 1)
    pad = 8
    pages = []
    for p, start in enumerate(range(0, len(items), per_page)):
        chunk = [(label, [_read(path) for path in paths]) for label, paths in items[start:start + per_page]]
        chunk = [(label, [None if rgb is None else _fit(rgb, *image_px) for rgb in imgs]) for label, imgs in chunk]
        rows = [chunk[i:i + columns] for i in range(0, len(chunk), columns)]
        # each row as tall as its tallest image: wide images (heatmap panels) leave no empty band
        heights = [LABEL_PX + max((im.shape[0] for _, imgs in row for im in imgs if im is not None), default=1)
                   for row in rows]
        page = np.full((sum(heights) + pad * (len(rows) + 1), min(columns, len(chunk)) * (cw + pad) + pad, 3),
                       255, np.uint8)
        y0 = pad
        for row, height in zip(rows, heights):
            for c, (label, imgs) in enumerate(row):
                x0 = pad + c * (cw + pad)
                cv2.putText(page, label[:60], (x0, y0 + LABEL_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                            cv2.LINE_AA)
                for j, img in enumerate(imgs):
                    if img is not None:  # a missing or unreadable image leaves its place blank
                        x, y = x0 + j * (image_px[0] + 4), y0 + LABEL_PX
                        page[y:y + img.shape[0], x:x + img.shape[1]] = img
            y0 += height + pad
        path = out_dir / f"{name}_{p + 1:03d}.jpg"
        formats.write_image(path, page, quality=75)  # pages for a screen: a 1,000-slide report stays near 40 MB
        pages.append(path)
    return pages
