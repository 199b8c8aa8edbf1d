"""CLAM's default tissue segmentation, re-implemented from its published description, as the
baseline our `segment` stage is measured against (benchmarks and tests only).

CLAM (Lu et al. 2021) `segmentTissue` with its default parameters: the level closest to a 64x
downsample, HSV saturation median-blurred (7), binary threshold at 8 (no Otsu), no closing,
contours with holes; foreground kept when its area exceeds a_t = 100 reference patches of 512 px
(level-0 px^2, i.e. depends on the scan magnification), at most 8 holes each, holes above
a_h = 16 reference patches.
"""

from __future__ import annotations

import cv2
import numpy as np
import openslide


def clam_segment(path, sthresh=8, mthresh=7, close=0, a_t=100, a_h=16, max_n_holes=8,
                 ref_patch_size=512):
    """Polygons (outer ring then holes, level-0 coordinates) as CLAM's defaults would give."""
    slide = openslide.OpenSlide(str(path))
    level = slide.get_best_level_for_downsample(64)
    w, h = slide.level_dimensions[level]
    rgba = np.asarray(slide.read_region((0, 0), level, (w, h)))
    rgb = rgba[..., :3]
    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    sat = cv2.medianBlur(sat, mthresh)
    _, mask = cv2.threshold(sat, sthresh, 255, cv2.THRESH_BINARY)
    if close > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((close, close), np.uint8))
    scale = slide.level_downsamples[level]
    patch_area = ref_patch_size ** 2 / scale ** 2
    min_fg, min_hole = a_t * patch_area, a_h * patch_area
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    polygons = []
    if hierarchy is None:
        return polygons
    hier = hierarchy[0]
    for i, c in enumerate(contours):
        if hier[i][3] != -1:
            continue
        holes = [contours[j] for j in range(len(contours)) if hier[j][3] == i]
        area = cv2.contourArea(c) - sum(cv2.contourArea(x) for x in holes)
        if area == 0 or area <= min_fg:
            continue
        holes = sorted(holes, key=cv2.contourArea, reverse=True)[:max_n_holes]
        holes = [x for x in holes if cv2.contourArea(x) > min_hole]
        polygons.append([c.reshape(-1, 2) * scale] + [x.reshape(-1, 2) * scale for x in holes])
    return polygons
