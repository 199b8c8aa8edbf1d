"""The files stages hand to each other: tissue contours (GeoJSON) and tile coordinates (HDF5).

Stages talk only through these files; this module is their one reader and writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np

from .errors import GhanetError
from .io import atomic_path

def write_contours(path, features: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def read_contours(path, classification: str = "Tissue") -> list[list[np.ndarray]]:
    """Polygons of one class (Tissue, or Pen: marker ink) as lists of rings (outer first, then
    holes), level-0 float coordinates. Features without a class are tissue."""
    try:
        doc = json.loads(Path(path).read_text())
        polys = []
        for feat in doc["features"]:
            name = ((feat.get("properties") or {}).get("classification") or {}).get("name", "Tissue")
            if name != classification:
                continue
            geom = feat["geometry"]
            rings_list = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
            for rings in rings_list:
                polys.append([np.asarray(r, np.float64).reshape(-1, 2) for r in rings])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GhanetError(f"contours {path} unreadable ({exc}); rerun the segment stage") from None
    return polys


def write_image(path, rgb: np.ndarray, fmt: str | None = None, quality: int = 90) -> None:
    """An RGB image as PNG, or as JPEG for a .jpg path or fmt "jpg": QC thumbnails of tissue are
    photographs, which JPEG keeps at a sixth of PNG's size (reports of big cohorts). Atomic."""
    ext = "." + ((fmt or Path(path).suffix).lstrip(".").lower() or "png")
    jpeg = ext in (".jpg", ".jpeg")
    ok, buf = cv2.imencode(".jpg" if jpeg else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality] if jpeg else [])
    if not ok:
        raise GhanetError(f"could not encode {ext} image for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def write_coords(path, coords: np.ndarray, attrs: dict) -> None:
    """Coords file CLAM and TRIDENT read: dataset `coords` (N x 2, level-0 top-left) with attributes
    (tile.py says what they mean)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("coords", data=np.asarray(coords, np.int64).reshape(-1, 2))
            for k, v in attrs.items():
                ds.attrs[k] = v


def read_coords(path) -> tuple[np.ndarray, dict]:
    try:
        with h5py.File(path, "r") as f:
            ds = f["coords"]
            return ds[:], {k: plain_attr(v) for k, v in ds.attrs.items()}
    except (OSError, KeyError) as exc:
        raise GhanetError(f"coords file {path} unreadable ({exc}); rerun the tile stage") from None


def plain_attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def write_features(path, features: np.ndarray, coords: np.ndarray, coords_attrs: dict,
                   file_attrs: dict) -> None:
    """One HDF5 per slide and encoder: `features` (N x D float32) and `coords` (N x 2), CLAM layout."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=np.asarray(features, np.float32))
            ds = f.create_dataset("coords", data=np.asarray(coords, np.int64).reshape(-1, 2))
            for k, v in coords_attrs.items():
                ds.attrs[k] = v
            for k, v in file_attrs.items():
                f.attrs[k] = v


def tile_sizes(attrs: dict) -> tuple[int, int]:
    """(pixels read at patch_level, pixels the encoder sees) of a coords file's tiles. Files written
    before `target_patch_size` held the target in `patch_size` and the read in `read_size`; CLAM's
    and TRIDENT's files hold no target (their tiles are used as read)."""
    read = int(attrs.get("read_size") or attrs["patch_size"])
    target = attrs.get("target_patch_size") or (attrs["patch_size"] if "read_size" in attrs else read)
    return read, int(target)
