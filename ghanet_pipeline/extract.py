"""Stage `extract`: one slide's tiles through an encoder, into `features` (N x D) + `coords`.

Reading is kept off the model's critical path: reader threads each open their own OpenSlide
handle, read whole batches at the level `tile` chose, resize to the encoder input with OpenCV and
hand over uint8 (4x less to move than float). Normalisation, channels-last and the precision cast
happen on the device, and inference runs under autocast (bf16 on a CPU with bf16 units).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import openslide
import torch

from . import __version__, devices, encoders, formats, wsi
from .errors import GhanetError, SlideError
from .io import atomic_path

log = logging.getLogger("ghanet.extract")


class TileReader:
    """Reads batch b = tiles [b*B, (b+1)*B) as uint8 (B, S, S, 3). Read errors come back as text.

    Each reader thread keeps its own OpenSlide handle. Threads, not processes: OpenSlide and
    OpenCV release the GIL, so reading overlaps inference without forking a process that holds
    OpenSlide/OpenMP threads (which can deadlock) and without copying batches between processes.
    """

    def __init__(self, slide_path, coords: np.ndarray, level: int, read_size: int, out_size: int,
                 batch_size: int):
        self.slide_path, self.coords, self.level = str(slide_path), coords, level
        self.read_size, self.out_size, self.batch_size = read_size, out_size, batch_size
        self._local = threading.local()
        self._handles: list[openslide.OpenSlide] = []

    def __len__(self):
        return (len(self.coords) + self.batch_size - 1) // self.batch_size

    def _handle(self) -> openslide.OpenSlide:
        if not hasattr(self._local, "slide"):
            self._local.slide = openslide.OpenSlide(self.slide_path)
            self._handles.append(self._local.slide)
        return self._local.slide

    def read_batch(self, b: int):
        idx = range(b * self.batch_size, min(len(self.coords), (b + 1) * self.batch_size))
        out = np.empty((len(idx), self.out_size, self.out_size, 3), np.uint8)
        slide = self._handle()
        for j, i in enumerate(idx):
            x, y = (int(v) for v in self.coords[i])
            try:
                rgba = np.asarray(slide.read_region((x, y), self.level, (self.read_size, self.read_size)))
            except openslide.OpenSlideError as exc:
                return None, f"tile #{i} at level-0 ({x}, {y}): {exc}"
            rgb = wsi.rgba_to_rgb(rgba) if rgba[..., 3].min() < 255 else rgba[..., :3]
            if self.read_size != self.out_size:
                interp = cv2.INTER_AREA if self.read_size > self.out_size else cv2.INTER_CUBIC
                rgb = cv2.resize(rgb, (self.out_size, self.out_size), interpolation=interp)
            out[j] = rgb
        return torch.from_numpy(out), None

    def __getstate__(self):  # worker processes open their own handles
        state = dict(self.__dict__)
        state.pop("_local"), state.pop("_handles")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local, self._handles = threading.local(), []

    def batches(self, workers: int, processes: bool = False):
        """Batches in order; with workers > 0, up to 2 x workers batches are read ahead.

        Threads are the default: no start-up cost, nothing copied between processes. Processes
        (started by forkserver: a plain fork of a process whose OpenSlide/OpenMP threads are
        running can deadlock) are kept as an option; on an H200 machine they fed fewer tiles/s
        than 14 threads (140 vs 490), see benchmarks/RESULTS.md.
        """
        if workers <= 0:
            for b in range(len(self)):
                yield self.read_batch(b)
            return
        if processes:
            loader = torch.utils.data.DataLoader(
                _Batches(self), batch_size=None, num_workers=workers, prefetch_factor=4,
                multiprocessing_context="forkserver", worker_init_fn=_quiet_worker,
            )
            yield from loader
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="tile-reader") as pool:
            ahead = collections.deque()
            for b in range(len(self)):
                ahead.append(pool.submit(self.read_batch, b))
                if len(ahead) > 2 * workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    def close(self):
        for h in self._handles:
            h.close()
        self._handles.clear()


class _Batches(torch.utils.data.Dataset):
    def __init__(self, reader: TileReader):
        self.reader = reader

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, b):
        return self.reader.read_batch(b)


def _quiet_worker(_):
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def check_coords(slide: openslide.OpenSlide, coords: np.ndarray, attrs: dict, slide_id: str, coords_path) -> None:
    """Refuse a coords file written for another slide."""
    named = attrs.get("slide_id")
    if named and named != slide_id:
        raise GhanetError(f"coords file {coords_path} is for slide {named}, not {slide_id}; rerun tile for {slide_id}")
    level = int(attrs["patch_level"])
    if level >= slide.level_count:
        raise GhanetError(f"coords file {coords_path} reads level {level}, but slide {slide_id} has "
                          f"{slide.level_count} levels; it is from another slide, rerun tile")
    if "level_dim" in attrs and tuple(attrs["level_dim"]) != tuple(slide.level_dimensions[level]):
        raise GhanetError(
            f"coords file {coords_path} was made for a slide of {tuple(attrs['level_dim'])} px at level "
            f"{level}, but slide {slide_id} has {slide.level_dimensions[level]}; it is from another "
            "slide, rerun tile"
        )
    if len(coords):
        # CLAM's files have no level-0 size: their patch_size pixels at patch_level
        ps0 = int(attrs.get("patch_size_level0") or round(attrs["patch_size"] * slide.level_downsamples[level]))
        w, h = slide.dimensions
        if coords[:, 0].max() + ps0 > w or coords[:, 1].max() + ps0 > h or coords.min() < 0:
            raise GhanetError(f"coords file {coords_path} has tiles outside slide {slide_id} ({w} x {h}); "
                              "it is from another slide, rerun tile")


def record_failure(slide_id: str, reason: str, *, features_h5: str) -> None:
    """A feature file without features that says the slide failed, and why (on_slide_error: skip)."""
    formats.write_features(features_h5, np.zeros((0, 0), np.float32), np.zeros((0, 2), np.int64), {},
                           {"slide_id": slide_id, "status": "failed", "reason": reason})


def run(slide_path: str, slide_id: str, params: dict, *, coords_h5: str, features_h5: str,
        features_pt: str | None = None, device: str = "auto", batch_size: int = 64,
        workers: int = 1, threads: int | None = None, reader: str = "threads", wants_gpu: bool = True) -> dict:
    coords, attrs = formats.read_coords(coords_h5)
    if attrs.get("status") == "failed":  # recorded upstream (cohort.on_slide_error: skip)
        record_failure(slide_id, attrs["reason"], features_h5=features_h5)
        return {"slide_id": slide_id, "n_tiles": 0, "dim": 0, "encoder": "", "precision": "", "failed": True}
    dev = devices.resolve(device, wants_gpu, "extract") if isinstance(device, str) else device
    slide = wsi.open_slide(slide_path, slide_id)
    check_coords(slide, coords, attrs, slide_id, coords_h5)
    slide.close()

    if threads:
        torch.set_num_threads(threads)
    spec, model, whash = encoders.load(params["encoder"], params["weights"])
    dtype = encoders.autocast_dtype(spec, params["precision"], dev)
    memory_format = torch.channels_last if params["channels_last"] else torch.contiguous_format
    model = model.to(dev, memory_format=memory_format)
    processes = reader == "processes"
    feats = extract_tiles(model, spec, slide_path, slide_id, coords, attrs, dev, dtype, memory_format,
                          batch_size, workers, processes)

    file_attrs = {
        "slide_id": slide_id, "encoder": spec.name, "weights_sha256": whash,
        "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
        "dim": spec.dim, "input_size": spec.input_size, "patch_size": formats.tile_sizes(attrs)[1],
        "target_mpp": attrs["target_mpp"], "level0_mpp": attrs["level0_mpp"],
        "channels_last": bool(params["channels_last"]), "ghanet_version": __version__,
        # provenance: segmentation, tiling and extraction settings, which checkpoints record
        "settings": json.dumps({**json.loads(attrs.get("settings", "{}")), "extract": params}, sort_keys=True),
    }
    formats.write_features(features_h5, feats, coords, attrs, file_attrs)
    if features_pt:
        write_features_pt(features_pt, feats)
    return {"slide_id": slide_id, "n_tiles": len(coords), "dim": spec.dim, **file_attrs}


@torch.inference_mode()
def extract_tiles(model, spec, slide_path, slide_id, coords, attrs, dev, dtype, memory_format,
                  batch_size, workers, processes=False) -> np.ndarray:
    n = len(coords)
    feats = np.empty((n, spec.dim), np.float32)
    if n == 0:
        return feats
    reader = TileReader(slide_path, coords, int(attrs["patch_level"]), formats.tile_sizes(attrs)[0],
                        spec.input_size, batch_size)
    # x_norm = (x / 255 - mean) / std = x * scale - shift, one fused op on the device
    std = torch.tensor(spec.std, device=dev).view(1, 3, 1, 1)
    mean = torch.tensor(spec.mean, device=dev).view(1, 3, 1, 1)
    scale, shift = 1.0 / (255.0 * std), mean / std
    t0 = time.perf_counter()
    cv2.setNumThreads(1)  # one resize per call; leave the cores to the model
    try:
        _run_batches(model, reader.batches(workers, processes), feats, slide_path, slide_id, dev,
                     dtype, memory_format, scale, shift)
    finally:
        reader.close()
    log.info("%s: %d tiles in %.1f s (%.1f tiles/s)", slide_id, n, time.perf_counter() - t0,
             n / (time.perf_counter() - t0))
    return feats


def _run_batches(model, batches, feats, slide_path, slide_id, dev, dtype, memory_format, scale, shift):
    done = 0
    for imgs, error in batches:
        if error is not None:
            raise SlideError(f"slide {slide_id}: reading {slide_path} failed at {error}; the file is "
                             "corrupt or truncated, copy it again from its source")
        if dev.type == "cuda":
            imgs = imgs.pin_memory()
        x = imgs.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
        x = (x * scale - shift).contiguous(memory_format=memory_format)
        if dtype is not None:
            with torch.autocast(dev.type, dtype=dtype):
                out = model(x)
        else:
            out = model(x)
        feats[done: done + len(out)] = out.float().cpu().numpy()
        done += len(out)


def write_features_pt(path, features: np.ndarray) -> None:
    """The `pt_files/<slide>.pt` tensor (N x D) that the official MCAT/G-HANet loaders read."""
    with atomic_path(path) as tmp:
        torch.save(torch.from_numpy(np.asarray(features, np.float32)), tmp)
