"""Slide access shared by the slide stages: open with clear errors, physical resolution, levels.

Resolution is physical: every choice here is made in microns per pixel, never by level index.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openslide

from .errors import SlideError


CONVERT = "vips tiffsave IN.tif OUT.tif --tile --pyramid --compression jpeg --Q 90"


def open_slide(path: str | Path, slide_id: str) -> openslide.OpenSlide:
    path = Path(path)
    if not path.exists():
        raise SlideError(
            f"slide {slide_id}: file not found: {path}; fix the `path` column of the slide sheet"
        )
    if path.is_dir():
        path = _dicom_file(path, slide_id)
    try:
        slide = openslide.OpenSlide(str(path))
        # OpenSlide opens some TIFFs it cannot decode (32-bit samples): one pixel tells
        slide.read_region((0, 0), slide.level_count - 1, (1, 1))
        return slide
    except openslide.OpenSlideUnsupportedFormatError:
        if _looks_like_tiff(path):
            raise SlideError(_tiff_problem(path, slide_id)) from None
        raise SlideError(
            f"slide {slide_id}: {path} is not a whole-slide image OpenSlide can read; "
            "point the sheet at the slide file (.svs, .tiff, .ndpi, .mrxs, ...)"
        ) from None
    except openslide.OpenSlideError as exc:
        if _looks_like_tiff(path):
            raise SlideError(_tiff_problem(path, slide_id, str(exc))) from None
        raise SlideError(
            f"slide {slide_id}: {path} cannot be opened ({exc}); the file is corrupt or truncated, "
            "copy it again from its source"
        ) from None


def _dicom_file(folder: Path, slide_id: str) -> Path:
    """A DICOM WSI is a folder of .dcm files (one per level); OpenSlide opens the series from any one."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".dcm" and p.is_file())
    if not files:
        raise SlideError(
            f"slide {slide_id}: {folder} is a folder without .dcm files; point the sheet's `path` at "
            "the slide file itself (or at the folder of a DICOM slide)"
        )
    for path in files:
        if openslide.OpenSlide.detect_format(str(path)) == "dicom":
            return path
    raise SlideError(
        f"slide {slide_id}: no file in {folder} is a DICOM whole-slide image OpenSlide can read "
        f"({len(files)} .dcm files); point the sheet's `path` at the slide's own folder or one of its .dcm files"
    )


def _looks_like_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    return magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF and BigTIFF


def _tiff_problem(path: Path, slide_id: str, detail: str = "") -> str:
    """Why OpenSlide refused a TIFF: a layout it does not support (say so, with the conversion), or
    a file that does not parse or whose layout is fine (corrupt or truncated)."""
    import tifffile

    layout = []
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if not page.is_tiled:
                layout.append("stored in strips, not tiles")
            if page.bitspersample != 8:
                layout.append(f"{page.bitspersample}-bit samples, not 8-bit")
            if page.samplesperpixel not in (1, 3, 4):
                layout.append(f"{page.samplesperpixel} samples per pixel")
    except Exception:  # noqa: BLE001, S110 - whatever tifffile trips on, the file does not parse
        pass
    if not layout:
        because = f" ({detail})" if detail else ""
        return (f"slide {slide_id}: {path} cannot be read{because}; the file is corrupt or truncated, "
                "copy it again from its source")
    convert = CONVERT.replace("IN.tif", str(path))
    if any("-bit" in why for why in layout):  # JPEG takes 8-bit samples: scale them first
        convert = f"vips cast {path} 8bit.v uchar (scaled as the data needs), then " + CONVERT.replace("IN.tif", "8bit.v")
    return (f"slide {slide_id}: {path} is a valid TIFF that OpenSlide does not support "
            f"({', '.join(layout)}); convert it to a tiled pyramidal TIFF: {convert}")


def read_error(slide_id: str, path, exc: Exception, where: str = "") -> SlideError:
    at = f" at {where}" if where else ""
    return SlideError(
        f"slide {slide_id}: reading {path}{at} failed ({exc}); the file is corrupt or truncated, "
        "copy it again from its source"
    )


# Exporters (libvips, PIL, ImageMagick, ...) write these resolutions by default; no scanner does.
DEFAULT_DPI = (72, 96, 150, 300, 600)
MPP_RANGE = (0.1, 10.0)  # cohort.mpp_range's default: scanners write 0.1-1 um/px, 10 is a 1x scan


def resolve_mpp(
    slide: openslide.OpenSlide, slide_id: str, sheet_mpp: float | None, default_mpp: float | None,
    mpp_range=MPP_RANGE,
) -> tuple[float, str]:
    """Level-0 microns per pixel and where it came from: the sheet's `mpp` ("sheet"), else the
    file's ("file"), else config default_mpp ("default"). A file resolution outside `mpp_range`,
    or one of the inch resolutions exporters write by default, counts as none; a sheet or default
    value outside the range is an error (often a magnification typed as mpp)."""
    lo, hi = mpp_range
    if sheet_mpp is not None and not (isinstance(sheet_mpp, float) and math.isnan(sheet_mpp)):
        _check_given(float(sheet_mpp), lo, hi, f"slide {slide_id}: the sheet's mpp", "the slide sheet's `mpp` column")
        return float(sheet_mpp), "sheet"
    found = ""
    value = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
    if value:
        try:
            mpp = float(value)
        except ValueError:
            mpp = 0.0
        dpi = 25400.0 / mpp if mpp > 0 else 0.0
        if any(abs(dpi - d) < 0.01 for d in DEFAULT_DPI):
            found = f"the file says {mpp:.4g} um/px ({dpi:.0f} dpi, an exporter's default, not a scan resolution)"
        elif mpp > 0 and not lo <= mpp <= hi:
            found = f"the file says {mpp:.4g} um/px, outside cohort.mpp_range {lo:g}-{hi:g}"
        elif mpp > 0:
            return mpp, "file"
    if default_mpp is not None:
        _check_given(float(default_mpp), lo, hi, "cohort.default_mpp", "cohort.default_mpp in config.yaml")
        return float(default_mpp), "default"
    if found:
        raise SlideError(
            f"slide {slide_id}: {found}; give its microns per pixel in the slide sheet's `mpp` column "
            "(0.25 for 40x, 0.5 for 20x scans), or set cohort.default_mpp"
        )
    raise SlideError(
        f"slide {slide_id}: the file has no microns-per-pixel metadata; add an `mpp` column to the "
        "slide sheet for it, or set cohort.default_mpp in config.yaml"
    )


def _check_given(mpp: float, lo: float, hi: float, what: str, where: str) -> None:
    if not lo <= mpp <= hi:
        hint = f" (a magnification? {mpp:g}x is about {10 / mpp:.2g} um/px)" if mpp in (2, 4, 5, 10, 20, 40, 60, 80) else ""
        raise SlideError(
            f"{what} is {mpp:g} um/px, outside the plausible {lo:g}-{hi:g} um/px{hint}; correct {where} "
            "(or widen cohort.mpp_range)"
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


# a level is read a block at a time (16 MB of RGBA: 512 stored-tile rows high, so each stored tile
# is decoded about once): segmentation and thumbnails stay small whatever the slide
BLOCK_PX = (8192, 512)


UNREADABLE_PX = 256  # a block OpenSlide cannot decode is read again in pieces this size


class _Reader:
    """Blocks of one level. JPEG tiles (tiled TIFF, Aperio) are decoded straight from the file
    (`StoredTiles`: the same pixels as OpenSlide's, without its compositing, several times faster);
    anything else, and any block over a tile that does not decode, is OpenSlide's. After a read
    error OpenSlide's handle is unusable, so a fresh one is opened and the failed block is read
    again in small pieces, those that still fail left white (as glass) and recorded in `unreadable`
    (level-0 x, y, w, h)."""

    def __init__(self, slide: openslide.OpenSlide, slide_id: str, path, level: int, block: tuple[int, int]):
        from .stored_tiles import StoredTiles

        self.given = slide
        self.slide, self.slide_id, self.path, self.level = slide, slide_id, path, level
        self.down = slide.level_downsamples[level]
        self.unreadable: list[tuple[int, int, int, int]] = []
        self.stored, _ = StoredTiles.open(path, slide, level)
        st = self.stored
        if st is not None:  # a block's tiles and the previous block's: those shared are decoded once
            st.capacity = 2 * (block[0] // st.tw + 2) * (block[1] // st.th + 2)

    def _fresh(self) -> None:
        self.slide = open_slide(self.path, self.slide_id)

    def read(self, x: int, y: int, size: tuple[int, int]) -> np.ndarray:
        """RGB of `size` (w, h) at level pixel (x, y)."""
        from .stored_tiles import CorruptTile

        if self.stored is not None:
            try:
                block = self.stored.region(x, y, *size)
                if block is not None:
                    return block
            except CorruptTile:
                pass  # OpenSlide reads the block around it
        down, level = self.down, self.level
        x0, y0 = int(round(x * down)), int(round(y * down))
        try:
            return rgba_to_rgb(np.asarray(self.slide.read_region((x0, y0), level, size)))
        except openslide.OpenSlideError:
            self._fresh()
        out = np.full((size[1], size[0], 3), 255, np.uint8)
        for dy in range(0, size[1], UNREADABLE_PX):
            for dx in range(0, size[0], UNREADABLE_PX):
                w, h = min(UNREADABLE_PX, size[0] - dx), min(UNREADABLE_PX, size[1] - dy)
                at = (x0 + int(round(dx * down)), y0 + int(round(dy * down)))
                try:
                    out[dy:dy + h, dx:dx + w] = rgba_to_rgb(np.asarray(self.slide.read_region(at, level, (w, h))))
                except openslide.OpenSlideError:
                    self._fresh()
                    self.unreadable.append((*at, int(round(w * down)), int(round(h * down))))
        return out

    def close(self) -> None:
        """Close what this reader opened (the slide it was given stays open)."""
        if self.stored is not None:
            self.stored.close()
        if self.slide is not self.given:
            self.slide.close()


DCT_SCALE = 8  # libjpeg-turbo decodes a JPEG at 1/8 of its size (DCT scaling) at a fraction of the cost


def _block_mean(img: np.ndarray, s: int) -> np.ndarray:
    """Means of s x s blocks, the last row and column of blocks ragged (only the pixels there)."""
    rows, cols = np.arange(0, img.shape[0], s), np.arange(0, img.shape[1], s)
    sums = np.add.reduceat(np.add.reduceat(img.astype(np.uint32), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, img.shape[0])), np.diff(np.append(cols, img.shape[1])))
    return (sums / counts[..., None] + 0.5).astype(np.uint8)


def _dct_reduced(slide, path, level: int, f: int) -> np.ndarray | None:
    """The level shrunk f-fold (f a multiple of 8) into means of f x f blocks, from its stored JPEG
    tiles decoded at 1/8 scale by libjpeg-turbo (each 8 x 8 block's mean straight from its DCT: most
    of the inverse DCT and colour conversion skipped), then block means of those. Edge tiles are
    decoded whole, so their padding is not averaged in. None where the level is not plain JPEG
    tiles or a tile does not decode: OpenSlide reads it, around what it cannot. Not bit-exact with a
    full decode and block means (benchmarks/RESULTS.md says how close)."""
    import math

    import simplejpeg

    from .stored_tiles import StoredTiles

    s = DCT_SCALE
    stored, _ = StoredTiles.open(path, slide, level)
    if stored is None:
        return None
    try:
        w, h, tw, th = stored.width, stored.height, stored.tw, stored.th
        if tw % s or th % s:
            return None
        sw, sh = tw // s, th // s
        band = th * f // math.gcd(th, f)  # level rows per band: whole tile rows and whole f-blocks
        mid = np.empty((-(-h // f), -(-w // f), 3), np.uint8)
        strip = np.empty((band // s, stored.across * sw, 3), np.uint8)
        for y in range(0, h, band):
            rows = min(band, h - y)
            for ty in range(y // th, -(-(y + rows) // th)):
                top = (ty * th - y) // s
                edge_y = min(th, h - ty * th)
                for tx in range(stored.across):
                    jpeg, edge_x = stored.jpeg(ty * stored.across + tx), min(tw, w - tx * tw)
                    if edge_x < tw or edge_y < th:  # the padding of an edge tile must not be averaged in
                        whole = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", strict=True)
                        tile = _block_mean(whole[:edge_y, :edge_x], s)
                    else:
                        tile = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", strict=True, min_height=sh, min_width=sw)
                        if tile.shape[:2] != (sh, sw):
                            return None
                    strip[top:top + tile.shape[0], tx * sw:tx * sw + tile.shape[1]] = tile
            part = strip[:-(-rows // s), :-(-w // s)]
            mid[y // f:y // f + -(-rows // f)] = part if f == s else _block_mean(part, f // s)
        return mid
    except ValueError:  # a corrupt tile (strict decoding)
        return None
    finally:
        stored.close()


def read_rgb_at(slide: openslide.OpenSlide, size: tuple[int, int], slide_id: str, path,
                unreadable: list | None = None) -> np.ndarray:
    """The whole slide as RGB uint8 at `size` (w, h) pixels, transparent (unscanned) areas white.

    Reads the coarsest level at least as fine as `size`, band by band, and downsamples each band on
    the fly, so memory is bounded by the output and one band whatever the slide (a single-level
    slide is never read whole). A level of JPEG tiles 8-fold or more larger than `size` (a
    single-level slide, say) is decoded at 1/8 scale instead (`_dct_reduced`). Where OpenSlide sees
    one level but the file keeps a pyramid that it does not (OME-TIFF SubIFDs), the pyramid level
    is read with tifffile instead. What OpenSlide
    cannot decode (corrupt stored tiles) is read around, left white and appended to `unreadable` as
    level-0 (x, y, w, h); a slide more than half unreadable is an error (a truncated file, say).
    """
    import cv2

    w0, h0 = slide.dimensions
    out_w, out_h = max(1, int(size[0])), max(1, int(size[1]))
    if slide.level_count == 1 and min(w0 / out_w, h0 / out_h) > 2:
        pyramid = _subifd_level(path, (w0, h0), (out_w, out_h))
        if pyramid is not None:
            return cv2.resize(pyramid, (out_w, out_h), interpolation=cv2.INTER_AREA)
    level = 0
    for i, (lw, lh) in enumerate(slide.level_dimensions):
        if lw >= out_w and lh >= out_h:
            level = i
    lw, lh = slide.level_dimensions[level]
    # the level is read in blocks (a band of rows, a chunk of columns at a time) of a whole number
    # f of pixels per side, each shrunk f-fold exactly, so no seam shows; the small result (under
    # twice the output per side) is resized to the output at the end
    f = max(1, min(lw // out_w, lh // out_h))
    # JPEG tiles decoded small, shrunk by the multiple of 8 at or under f (the resize below does the rest)
    reduced = _dct_reduced(slide, path, level, f // DCT_SCALE * DCT_SCALE) if f >= DCT_SCALE else None
    if reduced is not None:
        return reduced if reduced.shape[:2] == (out_h, out_w) else cv2.resize(reduced, (out_w, out_h),
                                                                              interpolation=cv2.INTER_AREA)
    band_h, chunk_w = f * max(1, BLOCK_PX[1] // f), f * max(1, BLOCK_PX[0] // f)
    mid_w, mid_h = -(-lw // f), -(-lh // f)
    mid = np.empty((mid_h, mid_w, 3), np.uint8)
    reader = _Reader(slide, slide_id, path, level, (chunk_w, band_h))
    try:
        for y in range(0, lh, band_h):
            rows = min(band_h, lh - y)
            for x in range(0, lw, chunk_w):
                cols = min(chunk_w, lw - x)
                block = reader.read(x, y, (cols, rows))
                my, mx = y // f, x // f
                size = (-(-cols // f), -(-rows // f))
                mid[my:my + size[1], mx:mx + size[0]] = block if f == 1 else cv2.resize(
                    block, size, interpolation=cv2.INTER_AREA)
    finally:
        reader.close()
    if reader.unreadable:
        lost = sum(w * h for _, _, w, h in reader.unreadable) / (w0 * h0)
        if lost > 0.5:
            raise read_error(slide_id, path, f"{lost:.0%} of it cannot be decoded",
                             f"level {level}, from x {reader.unreadable[0][0]}, y {reader.unreadable[0][1]}")
        if unreadable is not None:
            unreadable += reader.unreadable
    if mid.shape[:2] == (out_h, out_w):
        return mid
    return cv2.resize(mid, (out_w, out_h), interpolation=cv2.INTER_AREA)


def _subifd_level(path, size0, want) -> np.ndarray | None:
    """The coarsest pyramid level tifffile sees (SubIFDs) that is at least `want`, or None."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            levels = tif.series[0].levels
            best = None
            for lvl in levels[1:]:
                if lvl.axes not in ("YXS", "YX"):  # planar or stacked layouts: read level 0 instead
                    continue
                h, w = lvl.shape[:2]
                if w >= want[0] and h >= want[1] and abs(w / size0[0] - h / size0[1]) < 0.02:
                    best = lvl
            if best is None:
                return None
            img = best.asarray()
    except Exception:  # noqa: BLE001 - no readable pyramid: read OpenSlide's level 0 in bands
        return None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]) if img.dtype == np.uint8 else None


def thumbnail_size(slide: openslide.OpenSlide, long_side: int) -> tuple[int, int]:
    w0, h0 = slide.dimensions
    f = min(1.0, long_side / max(w0, h0))
    return max(1, round(w0 * f)), max(1, round(h0 * f))


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    if rgba[..., 3].min() == 255:  # fully scanned (the usual case): no blending, no temporaries
        return np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha)) // 255
    return rgb.astype(np.uint8)
