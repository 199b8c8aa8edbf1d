"""Patches assembled from a slide's stored JPEG tiles, each decoded once.

OpenSlide's `read_region` decodes every stored tile a patch touches, for every patch (a 512 px
patch touches 9-16 of Aperio's 240 px tiles), and composites in cairo. For JPEG-compressed tiled
TIFF and Aperio SVS, the large majority of slides, this reader takes the raw tile bytes (offsets
and byte counts from tifffile, the shared JPEG tables spliced in), decodes each with
libjpeg-turbo (simplejpeg, which releases the GIL, so reader threads decode in parallel; strict,
so a corrupt tile is an error, never silent garbage: `CorruptTile`), keeps
the decoded tiles in a small cache shared by the threads, and copies patches out of them.

Colour space as OpenSlide has it: the TIFF's photometric tag says what the JPEG holds (Aperio's
tiles are often RGB-coded without a JFIF marker, which a decoder left to guess reads as YCbCr:
pink tiles). Patches equal OpenSlide's pixel for pixel (tested). Any other file, level or patch
(JPEG 2000 SVS, NDPI, MRXS, DICOM, a level whose coordinates are fractional, a patch over the
level's edge) is read by OpenSlide: `open` says why a file is not taken.
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np

VENDORS = ("aperio", "generic-tiff")  # OpenSlide formats whose levels are plain tiled TIFF pages
JPEG, RGB, YCBCR = 7, 2, 6
CACHE_BYTES = 256 << 20
# Adobe APP14 with transform 0: "the components are R, G, B", for a decoder that reads whole JPEG
# streams (torchvision, nvJPEG) and would otherwise take three components for YCbCr
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


class CorruptTile(ValueError):
    """A stored tile that does not decode cleanly: the patches over it are not to be trusted."""

    def __init__(self, stored: "StoredTiles", index: int, message: str):
        self.index, self.box, self.message = index, stored.tile_box(index), message
        x, y, w, h = self.box
        super().__init__(f"stored tile {index} (level-0 x {x}, y {y}, {w} x {h} px) is corrupt: {message}")


class StoredTiles:
    """One pyramid level's stored tiles; `patch(x, y, size)` at level-0 (x, y), or None where this
    patch is OpenSlide's to read."""

    def __init__(self, path, page, downsample: float):
        self.path = str(path)
        self.downsample = float(downsample)
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tw, self.th = int(page.tilewidth), int(page.tilelength)
        self.across = -(-self.width // self.tw)
        self.offsets, self.counts = list(page.dataoffsets), list(page.databytecounts)
        self.tables = page.jpegtables
        self.colorspace = "RGB" if int(page.photometric) == RGB else "YCbCr"
        self.fd = os.open(self.path, os.O_RDONLY)
        self.cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.capacity = max(64, CACHE_BYTES // (self.tw * self.th * 3))
        self.lock = threading.Lock()
        self.decoded = 0  # stored tiles decoded (a tile evicted and needed again counts twice)
        self.patches = 0
        self.corrupt: dict[int, str] = {}  # stored tiles libjpeg-turbo refused, and its message

    @classmethod
    def open(cls, path, slide, level: int) -> tuple[StoredTiles | None, str]:
        """The reader for `level` of an open OpenSlide `slide`, or None and why not."""
        import tifffile

        vendor = slide.properties.get("openslide.vendor", "")
        if vendor not in VENDORS:
            return None, f"{vendor or 'this'} format is read by OpenSlide"
        want = tuple(slide.level_dimensions[level])
        try:
            with tifffile.TiffFile(str(path)) as tif:
                page = next((p for p in tif.pages if p.is_tiled and (p.imagewidth, p.imagelength) == want), None)
                if page is None:
                    return None, f"no tiled TIFF page of {want[0]} x {want[1]} px for level {level}"
                if not (page.compression == JPEG and int(page.photometric) in (RGB, YCBCR)
                        and page.samplesperpixel == 3 and page.bitspersample == 8 and page.planarconfig == 1):
                    return None, f"level {level} is not 8-bit RGB JPEG tiles (compression {int(page.compression)})"
                if any(c == 0 for c in page.databytecounts):
                    return None, f"level {level} has tiles that were never written"
                return cls(path, page, slide.level_downsamples[level]), ""
        except (tifffile.TiffFileError, OSError, ValueError) as exc:
            return None, f"not readable as TIFF ({exc})"

    def tile_box(self, i: int) -> tuple[int, int, int, int]:
        """Stored tile i's level-0 (x, y, width, height)."""
        ty, tx = divmod(i, self.across)
        d = self.downsample
        return (int(round(tx * self.tw * d)), int(round(ty * self.th * d)), int(round(self.tw * d)),
                int(round(self.th * d)))

    def _tile(self, i: int) -> np.ndarray:
        with self.lock:
            tile = self.cache.get(i)
            if tile is not None:
                self.cache.move_to_end(i)
                return tile
            if i in self.corrupt:
                raise CorruptTile(self, i, self.corrupt[i])
        import simplejpeg

        # libjpeg-turbo's strict mode: a warning ("Corrupt JPEG data: premature end of data
        # segment") is an error, as in OpenSlide; a lenient decoder fills the rest of the tile with
        # garbage and says nothing
        try:
            tile = simplejpeg.decode_jpeg(self.jpeg(i), colorspace="RGB", strict=True)
        except ValueError as exc:
            with self.lock:
                self.corrupt[i] = str(exc)
            raise CorruptTile(self, i, str(exc)) from None
        with self.lock:
            self.decoded += 1
            self.cache[i] = tile
            if len(self.cache) > self.capacity:
                self.cache.popitem(last=False)
        return tile

    def jpeg(self, i: int) -> bytes:
        """Stored tile i as a complete JPEG stream: the shared tables spliced in after its SOI, and
        where the TIFF says the tiles are RGB-coded, the marker that says so."""
        data = os.pread(self.fd, self.counts[i], self.offsets[i])
        tables = self.tables[2:-2] if self.tables else b""  # without their own SOI and EOI
        return data[:2] + tables + (ADOBE_RGB if self.colorspace == "RGB" else b"") + data[2:]

    def pieces(self, x: int, y: int, size: int):
        """The stored tiles a size x size patch at level-0 (x, y) takes, as (tile index, rows and
        columns in the tile, rows and columns in the patch), or None where it is OpenSlide's to read."""
        lx, ly = x / self.downsample, y / self.downsample
        if lx != int(lx) or ly != int(ly):
            return None  # OpenSlide resamples a fractional position; leave that to it
        return self._pieces(int(lx), int(ly), size, size)

    def _pieces(self, lx: int, ly: int, w: int, h: int):
        """As `pieces`, for w x h level pixels at level (lx, ly)."""
        if lx < 0 or ly < 0 or lx + w > self.width or ly + h > self.height:
            return None  # past the edge OpenSlide gives transparent pixels
        out = []
        for ty in range(ly // self.th, (ly + h - 1) // self.th + 1):
            y0, y1 = max(ly, ty * self.th), min(ly + h, (ty + 1) * self.th)
            for tx in range(lx // self.tw, (lx + w - 1) // self.tw + 1):
                x0, x1 = max(lx, tx * self.tw), min(lx + w, (tx + 1) * self.tw)
                out.append((ty * self.across + tx,
                            (slice(y0 - ty * self.th, y1 - ty * self.th), slice(x0 - tx * self.tw, x1 - tx * self.tw)),
                            (slice(y0 - ly, y1 - ly), slice(x0 - lx, x1 - lx))))
        return out

    def _assemble(self, pieces, w: int, h: int) -> np.ndarray:
        out = np.empty((h, w, 3), np.uint8)
        for i, src, dst in pieces:
            out[dst] = self._tile(i)[src]
        return out

    def patch(self, x: int, y: int, size: int) -> np.ndarray | None:
        """size x size RGB at level-0 (x, y), as OpenSlide's read_region of this level gives it."""
        pieces = self.pieces(x, y, size)
        if pieces is None:
            return None
        self.patches += 1
        return self._assemble(pieces, size, size)

    def region(self, lx: int, ly: int, w: int, h: int) -> np.ndarray | None:
        """w x h RGB at level pixel (lx, ly), as OpenSlide's read_region gives it where the level's
        downsample is whole; None past the level's edge. Raises CorruptTile."""
        pieces = self._pieces(lx, ly, w, h)
        return None if pieces is None else self._assemble(pieces, w, h)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.cache.clear()
