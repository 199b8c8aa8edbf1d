"""Slide access shared by the slide stages: open with clear errors, physical resolution, levels.

Resolution is physical: every choice here is made in microns per pixel, never by level index.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openslide

from .errors import SlideError


def open_slide(path: str | Path, slide_id: str) -> openslide.OpenSlide:
    path = Path(path)
    if not path.exists():
        raise SlideError(
            f"slide {slide_id}: file not found: {path}; fix the `path` column of the slide sheet"
        )
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        if _looks_like_tiff(path):
            raise SlideError(
                f"slide {slide_id}: {path} is a TIFF that OpenSlide cannot read; the file is "
                "corrupt or truncated, copy it again from its source"
            ) from None
        raise SlideError(
            f"slide {slide_id}: {path} is not a whole-slide image OpenSlide can read; "
            "point the sheet at the slide file (.svs, .tiff, .ndpi, .mrxs, ...)"
        ) from None
    except openslide.OpenSlideError as exc:
        raise SlideError(
            f"slide {slide_id}: {path} cannot be opened ({exc}); the file is corrupt or truncated, "
            "copy it again from its source"
        ) from None


def _looks_like_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    return magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF and BigTIFF


def read_error(slide_id: str, path, exc: Exception, where: str = "") -> SlideError:
    at = f" at {where}" if where else ""
    return SlideError(
        f"slide {slide_id}: reading {path}{at} failed ({exc}); the file is corrupt or truncated, "
        "copy it again from its source"
    )


def resolve_mpp(
    slide: openslide.OpenSlide, slide_id: str, sheet_mpp: float | None, default_mpp: float | None
) -> tuple[float, str]:
    """Level-0 microns per pixel and where it came from: the sheet's `mpp` ("sheet"), else the
    file's ("file"), else config default_mpp ("default")."""
    if sheet_mpp is not None and not (isinstance(sheet_mpp, float) and math.isnan(sheet_mpp)):
        return float(sheet_mpp), "sheet"
    value = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
    if value:
        try:
            mpp = float(value)
        except ValueError:
            mpp = 0.0
        if mpp > 0:
            return mpp, "file"
    if default_mpp is not None:
        return float(default_mpp), "default"
    raise SlideError(
        f"slide {slide_id}: the file has no microns-per-pixel metadata; add an `mpp` column to the "
        "slide sheet for it, or set cohort.default_mpp in config.yaml"
    )


def level_mpps(slide: openslide.OpenSlide, mpp0: float) -> list[float]:
    return [mpp0 * d for d in slide.level_downsamples]


def level_for_mpp(slide: openslide.OpenSlide, mpp0: float, target_mpp: float, tolerance: float) -> int:
    """The coarsest level at or finer than `target_mpp` (within a relative tolerance).

    Reading that level and resizing down loses nothing; a coarser level would need upsampling.
    Falls back to level 0 when even level 0 is coarser than the target.
    """
    best = 0
    for level, mpp in enumerate(level_mpps(slide, mpp0)):
        if mpp <= target_mpp * (1.0 + tolerance):
            best = level
    return best


def read_level_rgb(slide: openslide.OpenSlide, level: int, slide_id: str, path) -> np.ndarray:
    """A whole pyramid level as RGB uint8, transparent (unscanned) areas as white."""
    w, h = slide.level_dimensions[level]
    try:
        rgba = np.asarray(slide.read_region((0, 0), level, (w, h)))
    except openslide.OpenSlideError as exc:
        raise read_error(slide_id, path, exc, f"level {level}") from None
    return rgba_to_rgb(rgba)


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha)) // 255
    return rgb.astype(np.uint8)
