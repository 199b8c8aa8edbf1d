"""Feature and patch files written exactly as CLAM, TRIDENT and STAMP write them: the datasets, dtypes,
chunking and attributes of each tool's own writer, and nothing it does not write. Each function names
the source it follows (read, not copied); a test built from our own picture of these files would prove
nothing about the real ones.
"""

from pathlib import Path

import h5py
import numpy as np


def _append(path, assets: dict, attrs: dict | None, mode: str, chunk_rows: int) -> None:
    """The append-as-you-go HDF5 writing CLAM and TRIDENT share: a dataset per asset, resizable along
    rows (maxshape None), chunked `chunk_rows` rows at a time, created by the first write (with its
    attributes) and grown by each later one."""
    with h5py.File(path, mode) as f:
        for key, val in assets.items():
            if key not in f:
                ds = f.create_dataset(key, shape=val.shape, maxshape=(None,) + val.shape[1:],
                                      chunks=(chunk_rows,) + val.shape[1:], dtype=val.dtype)
                ds[:] = val
                for k, v in ((attrs or {}).get(key) or {}).items():
                    ds.attrs[k] = v
            else:
                ds = f[key]
                ds.resize(len(ds) + len(val), axis=0)
                ds[-len(val):] = val


def clam_features(path, features: np.ndarray, coords: np.ndarray, batch_size: int = 256) -> Path:
    """CLAM's `extract_features_fp.py` (mahmoodlab/CLAM 53e2409, compute_w_loader with
    utils/file_utils.py save_hdf5): `h5_files/<slide>.h5`, written batch by batch (mode 'w', then
    'a'), `features` float32 and `coords` int32, chunks of 32 rows, and no attribute at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "w"
    for start in range(0, max(len(features), 1), batch_size):
        batch = slice(start, start + batch_size)
        _append(path, {"features": np.asarray(features[batch], np.float32),
                       "coords": np.asarray(coords[batch]).astype(np.int32)}, None, mode, 32)
        mode = "a"
    return path


def clam_patches(path, coords: np.ndarray, slide, name: str, patch_size: int = 256, patch_level: int = 0) -> Path:
    """CLAM's `create_patches_fp.py` (mahmoodlab/CLAM 53e2409, WholeSlideImage.process_contours and
    process_contour): `patches/<slide>.h5` with `coords` (level-0 top-left, int64) and the attributes
    patch_size, patch_level, downsample, downsampled_level_dim, level_dim, name, save_path; `slide`
    is the open OpenSlide slide (CLAM's downsample is OpenSlide's, as a pair)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    down = float(slide.level_downsamples[patch_level])
    dim = tuple(slide.level_dimensions[patch_level])
    attrs = {"coords": {"patch_size": patch_size, "patch_level": patch_level, "downsample": (down, down),
                        "downsampled_level_dim": np.array(dim), "level_dim": dim, "name": name,
                        "save_path": str(path.parent)}}
    _append(path, {"coords": np.asarray(coords, np.int64)}, attrs, "w", 32)
    return path


def trident_features(path, features: np.ndarray, coords: np.ndarray, *, encoder: str, patch_size: int,
                     level0_magnification: int, target_magnification: int, width: int, height: int) -> Path:
    """TRIDENT's patch features (mahmoodlab/TRIDENT a91fa84, WSI.extract_patch_features with
    IO.save_h5; the coords attributes are IO.coords_to_h5's, copied from the patch file): `features`
    with the attributes name, savetodir and encoder (TRIDENT's enc_name, e.g. `uni_v1`), `coords`
    int64 with patch_size (at the target magnification), patch_size_level0, level0_magnification,
    target_magnification, overlap, name, savetodir, level0_width, level0_height; chunks of one row;
    no file attribute."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.stem
    coords_attrs = {"patch_size": patch_size,
                    "patch_size_level0": patch_size * level0_magnification // target_magnification,
                    "level0_magnification": level0_magnification, "target_magnification": target_magnification,
                    "overlap": 0, "name": name, "savetodir": str(path.parent.parent / "patches"),
                    "level0_width": width, "level0_height": height}
    _append(path, {"features": np.asarray(features, np.float32), "coords": np.asarray(coords, np.int64)},
            {"features": {"name": name, "savetodir": str(path.parent), "encoder": encoder}, "coords": coords_attrs},
            "w", 1)
    return path


def stamp_features(path, features: np.ndarray, coords_um: np.ndarray, *, extractor: str, tile_size_um: float,
                   tile_size_px: int) -> Path:
    """STAMP's tile features (KatherLab/STAMP c54ce06, src/stamp/preprocessing/__init__.py): `coords`
    (float32 microns from the slide's top-left) and `feats` (float16) as plain datasets, and the file
    attributes stamp_version, extractor, unit ('um'), tile_size_um, tile_size_px, code_hash, feat_type."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["coords"] = np.asarray(coords_um, np.float32)
        f["feats"] = np.asarray(features, np.float16)
        f.attrs.update({"stamp_version": "2.5.0", "extractor": extractor, "unit": "um",
                        "tile_size_um": tile_size_um, "tile_size_px": tile_size_px, "code_hash": "1a2b3c4d",
                        "feat_type": "tile"})
    return path
