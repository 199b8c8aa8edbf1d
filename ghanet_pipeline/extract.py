"""Stage `extract`: one slide's tiles through an encoder, into `features` (N x D) + `coords`.

Reader threads read whole batches at the level `tile` chose (from the slide's stored JPEG tiles,
each decoded once, where the file allows it; else through their own OpenSlide handle), resize to
the encoder input with OpenCV and hand over uint8 (4x less to move than float). With a GPU they
read ahead beside it; with the model on the CPU, whose threads fill the cores, reading and the
model take turns (`TileReader._lockstep`). Normalisation, channels-last and the precision cast
happen on the device, and inference runs under autocast (bf16 on a CPU with bf16 units).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openslide
import torch

from . import __version__, commands, devices, encoders, formats, slidejob, wsi
from .errors import GhanetError, SlideError
from .io import atomic_path
from .stored_tiles import CorruptTile, StoredTiles

log = logging.getLogger("ghanet.extract")
MAX_CORRUPT_FRACTION = 0.2  # the schema's default, for checkpoints whose settings predate the key


@dataclass
class Damage:
    """What could not be decoded under a slide's patches: a stored tile libjpeg-turbo refuses (its
    strict mode, as OpenSlide's) or a patch OpenSlide could not read. Those patches are left out, and
    counted; the others are read as from an intact slide."""
    dropped: dict = field(default_factory=dict)  # patch index -> why
    where: dict = field(default_factory=dict)  # level-0 (x, y, w, h) of each corrupt tile or unreadable patch -> why

    def add(self, dropped: dict) -> None:
        """A batch's left-out patches: index -> (level-0 box, why)."""
        for i, (box, why) in dropped.items():
            self.dropped[i] = why
            self.where.setdefault(tuple(int(v) for v in box), why)

    def summary(self, n_patches: int) -> str:
        boxes = sorted(self.where)
        at = "; ".join(f"x {x}, y {y} ({w} x {h} px)" for x, y, w, h in boxes[:5]) + ("; ..." if len(boxes) > 5 else "")
        return (f"{len(boxes)} corrupt stored tile(s) or unreadable region(s) at level-0 {at} "
                f"({next(iter(self.where.values()))}); {len(self.dropped)} of {n_patches} patches over them left out")


class TileReader:
    """Reads batch b = tiles [b*B, (b+1)*B) as uint8 (B, S, S, 3). Read errors come back as text.

    Patches come from the slide's stored JPEG tiles, each decoded once (`stored_tiles`), where
    the file allows it (`slide_reader` auto), else from OpenSlide. Each reader thread keeps its
    own OpenSlide handle. Threads, not processes: OpenSlide, libjpeg-turbo and OpenCV release the
    GIL, so reading overlaps inference without forking a process that holds OpenSlide/OpenMP
    threads (which can deadlock) and without copying batches between processes.
    """

    def __init__(self, slide_path, coords: np.ndarray, level: int, read_size: int, out_size: int,
                 batch_size: int, slide_reader: str = "auto", device: torch.device | None = None,
                 slide_id: str = ""):
        self.slide_path, self.coords, self.level = str(slide_path), coords, level
        self.slide_id = slide_id or Path(slide_path).name
        self.read_size, self.out_size, self.batch_size = read_size, out_size, batch_size
        self.slide_reader = slide_reader
        self._local = threading.local()
        self._handles: list[openslide.OpenSlide] = []
        self._stored, self.why_openslide = None, "slide_reader: openslide"
        self._on_device = None  # slide_reader device: the stored tiles decoded on the job's device
        self.from_openslide = 0  # patches OpenSlide read
        if slide_reader in ("auto", "device"):
            self._stored, self.why_openslide = StoredTiles.open(self.slide_path, self._handle(), level)
        if slide_reader == "device" and self._stored is not None:
            from .device_tiles import DeviceTiles

            self._on_device = DeviceTiles(self._stored, device or torch.device("cpu"), read_size, out_size)

    @property
    def name(self) -> str:
        """Which reader ran: stored-tiles (device-tiles: decoded on the job's device), openslide, or
        both (patches the fast path leaves)."""
        if self._stored is None:
            return "openslide"
        fast = "device-tiles" if self._on_device is not None else "stored-tiles"
        return fast if not self.from_openslide else f"{fast}+openslide ({self.from_openslide} patches)"

    def __len__(self):
        return (len(self.coords) + self.batch_size - 1) // self.batch_size

    def _handle(self) -> openslide.OpenSlide:
        if not hasattr(self._local, "slide"):  # the one way every stage opens a slide (DICOM folders too)
            self._local.slide = wsi.open_slide(self.slide_path, self.slide_id)
            self._handles.append(self._local.slide)
        return self._local.slide

    def _reopen(self) -> None:
        """OpenSlide's handle is unusable after a read error: this thread takes a fresh one."""
        self._local.__dict__.pop("slide", None)
        self._handle()

    def _patch(self, x: int, y: int) -> np.ndarray:
        rgb = self._stored.patch(x, y, self.read_size) if self._stored is not None else None
        if rgb is None:
            self.from_openslide += 1
            rgba = np.asarray(self._handle().read_region((x, y), self.level, (self.read_size, self.read_size)))
            rgb = wsi.rgba_to_rgb(rgba) if rgba[..., 3].min() < 255 else rgba[..., :3]
        return rgb

    def _resized(self, rgb: np.ndarray) -> np.ndarray:
        if self.read_size == self.out_size:
            return rgb
        interp = cv2.INTER_AREA if self.read_size > self.out_size else cv2.INTER_CUBIC
        return cv2.resize(rgb, (self.out_size, self.out_size), interpolation=interp)

    def _indices(self, b: int) -> range:
        return range(b * self.batch_size, min(len(self.coords), (b + 1) * self.batch_size))

    def read_batch(self, b: int):
        if self._on_device is not None:
            return self._read_batch_on_device(self._indices(b))
        return self._read_batch_cpu(self._indices(b))

    def _read_batch_cpu(self, idx, out: np.ndarray | None = None):
        """Patches idx as uint8 (len(idx), S, S, 3), into `out` where given."""
        out = np.empty((len(idx), self.out_size, self.out_size, 3), np.uint8) if out is None else out
        dropped = {}  # patch index -> (level-0 box of what could not be decoded, why)
        for j, i in enumerate(idx):
            x, y = (int(v) for v in self.coords[i])
            try:
                out[j] = self._resized(self._patch(x, y))
            except CorruptTile as exc:  # left out and counted; the patch's pixels are never used
                dropped[i], out[j] = (exc.box, exc.message), 0
            except openslide.OpenSlideError as exc:
                self._reopen()
                size0 = int(round(self.read_size * self._handle().level_downsamples[self.level]))
                dropped[i], out[j] = ((x, y, size0, size0), f"OpenSlide: {exc}"), 0
            except (OSError, RuntimeError, ValueError) as exc:
                return None, f"tile #{i} at level-0 ({x}, {y}): {exc}", {}
        return torch.from_numpy(out), None, dropped

    def _read_batch_on_device(self, idx):
        """The batch decoded, assembled and resized on the device; patches the stored tiles do not
        cover exactly (fractional positions, slide edges) read by OpenSlide, as on the CPU path."""
        xy = [tuple(int(v) for v in self.coords[i]) for i in idx]
        try:
            out, rest = self._on_device.batch(xy)
            for j in rest:
                out[j] = torch.from_numpy(self._resized(self._patch(*xy[j]))).to(out.device)
        except (openslide.OpenSlideError, CorruptTile, OSError, RuntimeError, ValueError):
            # torchvision raises on a corrupt stored tile without naming it: the batch is read again
            # on the CPU, whose strict decoder finds the tile and leaves out only the patches over it
            return self._read_batch_cpu(idx)
        return out, None, {}

    def __getstate__(self):  # worker processes open their own handles and file descriptors
        state = dict(self.__dict__)
        state.pop("_local"), state.pop("_handles"), state.pop("_stored"), state.pop("_on_device")
        return state

    def __setstate__(self, state):  # worker processes decode on the CPU
        self.__dict__.update(state)
        self._local, self._handles, self._stored, self._on_device = threading.local(), [], None, None
        if self.slide_reader in ("auto", "device"):
            self._stored, _ = StoredTiles.open(self.slide_path, self._handle(), self.level)

    def batches(self, workers: int, processes: bool = False, lockstep: int = 0):
        """Batches in order; with workers > 0, up to 2 x workers batches are read ahead.

        Threads are the default: no start-up cost, nothing copied between processes. Processes
        (started by forkserver: a plain fork of a process whose OpenSlide/OpenMP threads are
        running can deadlock) are kept as an option; on an H200 machine they fed fewer tiles/s
        than 14 threads (140 vs 490), see benchmarks/RESULTS.md. With `lockstep` threads (a model
        on the CPU) each batch is read by that many threads at once, then handed over.
        """
        if workers <= 0:
            for b in range(len(self)):
                yield self.read_batch(b)
            return
        if lockstep and self._on_device is None and not processes:
            yield from self._lockstep(lockstep)
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

    def _lockstep(self, threads: int):
        """For a model on the CPU, whose threads already fill the cores: a reader running beside it
        takes a core from one of them mid-layer and the others wait for it at the layer's end (on 2
        cores EfficientNet-Lite0 ran at 0.83 of its speed beside one reader thread). So the model
        and the reading take turns: each batch is read by `threads` threads at once, each a run of
        neighbouring patches (they share stored tiles), while the model waits."""
        with ThreadPoolExecutor(threads, thread_name_prefix="tile-reader") as pool:
            for b in range(len(self)):
                idx = self._indices(b)
                out = np.empty((len(idx), self.out_size, self.out_size, 3), np.uint8)
                step = -(-len(idx) // threads)
                parts = [(idx[i:i + step], out[i:i + step]) for i in range(0, len(idx), step)]
                dropped = {}
                for _, error, lost in pool.map(lambda part: self._read_batch_cpu(*part), parts):
                    if error is not None:
                        yield None, error, {}
                        return
                    dropped.update(lost)
                yield torch.from_numpy(out), None, dropped

    def close(self):
        for h in self._handles:
            h.close()
        self._handles.clear()
        if self._stored is not None:
            self._stored.close()


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


def record_failure(slide_id: str, reason: str, *, features_h5: str, stage: str = "extract") -> None:
    """A feature file without features that says the slide failed, why, and at which stage it first
    failed (on_slide_error: skip)."""
    formats.write_features(features_h5, np.zeros((0, 0), np.float32), np.zeros((0, 2), np.int64), {},
                           {"slide_id": slide_id, "status": "failed", "reason": reason, "failed_stage": stage})


@dataclass
class Net:
    """The encoder as the tile loop runs it: model, its spec, device, autocast dtype (None: fp32)
    and memory format."""
    model: torch.nn.Module
    spec: encoders.EncoderSpec
    dev: torch.device
    dtype: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format


@dataclass
class Reading:
    """How tiles are read: batch size, reader threads (or processes), and the slide reader
    (auto: the stored JPEG tiles where the file allows it; device: those tiles decoded on the
    job's device, nvJPEG on a GPU; openslide)."""
    batch_size: int = 64
    workers: int = 1
    processes: bool = False
    slide_reader: str = "auto"
    lockstep: bool | None = None  # reading and the model take turns (TileReader._lockstep); None: on a CPU


def run(slide_path: str, slide_id: str, params: dict, *, coords_h5: str, features_h5: str,
        features_pt: str | None = None, device: str = "auto", threads: int | None = None,
        reading: Reading = Reading(), wants_gpu: bool = True) -> dict:
    coords, attrs = formats.read_coords(coords_h5)
    if attrs.get("status") == "failed":  # recorded upstream (cohort.on_slide_error: skip)
        record_failure(slide_id, attrs["reason"], features_h5=features_h5, stage=attrs.get("failed_stage", "tile"))
        return {"slide_id": slide_id, "n_tiles": 0, "dim": 0, "encoder": "", "precision": "", "failed": True}
    dev = devices.resolve(device, wants_gpu, "extract") if isinstance(device, str) else device
    slide = wsi.open_slide(slide_path, slide_id)
    check_coords(slide, coords, attrs, slide_id, coords_h5)
    slide.close()

    if threads:
        torch.set_num_threads(threads)
    spec, model, whash = _encoder(params["encoder"], params["weights"], _file_key(params["weights"]),
                                  str(encoders.hub_cache_dir()))
    memory_format = torch.channels_last if params["channels_last"] else torch.contiguous_format
    net = Net(model.to(dev, memory_format=memory_format), spec, dev,
              encoders.autocast_dtype(spec, params["precision"], dev), memory_format)
    damage = Damage()
    feats, reader = extract_tiles(net, slide_path, slide_id, coords, attrs, reading, damage)
    planned = len(coords)
    if damage.dropped:
        share = len(damage.dropped) / planned
        limit = params.get("max_corrupt_fraction", MAX_CORRUPT_FRACTION)
        if share > limit:
            raise SlideError(f"slide {slide_id}: {damage.summary(planned)}: {share:.0%} of its patches, more than "
                             f"extract.max_corrupt_fraction {limit:g}; the file is damaged, "
                             "copy it again from its source (or raise extract.max_corrupt_fraction)")
        keep = np.setdiff1d(np.arange(planned), sorted(damage.dropped))
        feats, coords = feats[keep], coords[keep]
        # the job's own line, which the run's summary and failures.csv carry
        print(f"ghanet extract: warning: slide {slide_id}: {damage.summary(planned)}", file=sys.stderr)

    file_attrs = {
        "slide_id": slide_id, "encoder": spec.name, "weights_sha256": whash,
        "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[net.dtype],
        "dim": spec.dim, "input_size": spec.input_size, "patch_size": formats.tile_sizes(attrs)[1],
        # the scale the encoder saw: the tile's pixels resized to its input (or to the card's resize)
        "encoder_mpp": float(attrs["target_mpp"]) * formats.tile_sizes(attrs)[1] / (spec.resize or spec.input_size),
        "target_mpp": attrs["target_mpp"], "level0_mpp": attrs["level0_mpp"],
        "channels_last": bool(params["channels_last"]), "ghanet_version": __version__, "reader": reader,
        # what could not be decoded: patches left out, and where (level-0 x, y, width, height)
        "patches_planned": planned, "dropped_patches": len(damage.dropped), "corrupt_tiles": len(damage.where),
        "corrupt_at": json.dumps(sorted(damage.where)[:50]),
        # provenance: segmentation, tiling and extraction settings, which checkpoints record
        "settings": json.dumps({**json.loads(attrs.get("settings", "{}")), "extract": params}, sort_keys=True),
    }
    formats.write_features(features_h5, feats, coords, attrs, file_attrs)
    if features_pt:
        write_features_pt(features_pt, feats)
    return {"slide_id": slide_id, "n_tiles": len(coords), "dim": spec.dim, **file_attrs}


@functools.lru_cache(maxsize=1)
def _encoder(name: str, weights: str | None, file_key, hub_dir: str):
    """The encoder, loaded and its weights hashed once per process: a job of several slides
    (slides_per_job) extracts them all with one load (foundation models take tens of seconds).
    Keyed by the weights file's size and time too, so a replaced file is loaded again."""
    spec, model, whash = encoders.load(name, weights)
    log.info("encoder %s loaded once for this job (weights sha256 %s...)", spec.name, whash[:12])
    return spec, model, whash


def _file_key(path: str | None):
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except (TypeError, OSError):
        return None


@torch.inference_mode()
def extract_tiles(net: Net, slide_path, slide_id: str, coords: np.ndarray, attrs: dict,
                  reading: Reading = Reading(), damage: Damage | None = None) -> tuple[np.ndarray, str]:
    """Features of the tiles at `coords` (N x D) and the reader that read them. A patch over a
    corrupt stored tile (or one OpenSlide cannot read) gets a row of NaN and goes into `damage`."""
    damage = damage if damage is not None else Damage()
    n = len(coords)
    feats = np.empty((n, net.spec.dim), np.float32)
    if n == 0:
        return feats, "none"
    reader = TileReader(slide_path, coords, int(attrs["patch_level"]), formats.tile_sizes(attrs)[0],
                        net.spec.resize or net.spec.input_size, reading.batch_size, reading.slide_reader, net.dev,
                        slide_id)
    if reader.name == "openslide":
        log.info("%s: read by OpenSlide (%s)", slide_id, reader.why_openslide)
    progress = Progress(slide_id, n, f"{net.dev}, {reader.name.split('+')[0]}")
    cv2.setNumThreads(1)  # one resize per call; leave the cores to the model
    try:
        turns = reading.lockstep if reading.lockstep is not None else net.dev.type == "cpu"
        lockstep = torch.get_num_threads() if turns else 0
        _run_batches(net, reader.batches(reading.workers, reading.processes, lockstep), feats, slide_path,
                     slide_id, progress, damage)
    finally:
        reader.close()
    progress.done(reader.name)
    if damage.dropped:
        feats[sorted(damage.dropped)] = np.nan
    return feats, reader.name


class Progress:
    """`n/N patches, patches/s, ETA, device, reader` in the log every few seconds, and at the end."""

    EVERY_S = 5.0

    def __init__(self, slide_id: str, total: int, where: str):
        self.slide_id, self.total, self.where = slide_id, total, where
        self.t0 = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.EVERY_S and done < self.total:
            self.last = now
            rate = done / (now - self.t0)
            log.info("%s: %d/%d patches, %.1f patches/s, ETA %.0f s, %s", self.slide_id, done, self.total,
                     rate, (self.total - done) / rate, self.where)

    def done(self, reader: str) -> None:
        t = time.perf_counter() - self.t0
        log.info("%s: %d patches in %.1f s (%.1f patches/s), %s", self.slide_id, self.total, t,
                 self.total / t, self.where.split(",")[0] + f", {reader}")


def _run_batches(net: Net, batches, feats, slide_path, slide_id, progress: Progress, damage: Damage):
    # x_norm = (x / 255 - mean) / std = x * scale - shift, one fused op on the device
    std = torch.tensor(net.spec.std, device=net.dev).view(1, 3, 1, 1)
    mean = torch.tensor(net.spec.mean, device=net.dev).view(1, 3, 1, 1)
    scale, shift = 1.0 / (255.0 * std), mean / std
    done = 0
    for imgs, error, dropped in batches:
        if error is not None:
            raise SlideError(f"slide {slide_id}: reading {slide_path} failed at {error}; the file is "
                             "corrupt or truncated, copy it again from its source")
        damage.add(dropped)
        if net.dev.type == "cuda" and imgs.device.type == "cpu":  # device-tiles batches are there already
            imgs = imgs.pin_memory()
        x = imgs.to(net.dev, non_blocking=True).permute(0, 3, 1, 2)
        if x.shape[-1] > net.spec.input_size:  # the card resizes, then crops the centre (Prov-GigaPath)
            o = (x.shape[-1] - net.spec.input_size) // 2
            x = x[..., o:o + net.spec.input_size, o:o + net.spec.input_size]
        x = x.float()
        x = x.mul_(scale).sub_(shift).contiguous(memory_format=net.memory_format)  # in place: no more 4-byte copies
        if net.dtype is not None:
            with torch.autocast(net.dev.type, dtype=net.dtype):
                out = net.model(x)
        else:
            out = net.model(x)
        feats[done: done + len(out)] = out.float().cpu().numpy()
        done += len(out)
        progress.update(done)


def write_features_pt(path, features: np.ndarray) -> None:
    """The `pt_files/<slide>.pt` tensor (N x D) that the official MCAT/G-HANet loaders read."""
    with atomic_path(path) as tmp:
        torch.save(torch.from_numpy(np.asarray(features, np.float32)), tmp)


# ---------------------------------------------------------------------------- commands


def _arguments(p) -> None:
    slidejob.slide_args(p)
    commands.stage_args(p)
    p.add_argument("--coords", required=True, help="coords HDF5 written by `ghanet tile`")
    p.add_argument("--features", required=True, help="output HDF5")
    p.add_argument("--features-pt", default=None, help="also write the MCAT .pt tensor here")
    commands.device_args(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="tile-reading processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--slide-reader", choices=["auto", "device", "openslide"], default="auto",
                   help="auto: patches from the stored JPEG tiles where the file allows it, else OpenSlide; "
                        "device: those tiles decoded, assembled and resized on the job's device (nvJPEG on a GPU)")
    p.add_argument("--reader", choices=["threads", "processes"], default="threads",
                   help="tile readers run as threads (default) or forkserver processes")


def _one_slide(args) -> None:
    reading = Reading(args.batch_size, args.workers, args.reader == "processes", args.slide_reader)
    res = run(args.slide, args.slide_id, commands.section(args, "extract"), coords_h5=args.coords,
              features_h5=args.features, features_pt=args.features_pt, device=args.device, threads=args.threads,
              reading=reading, wants_gpu=args.gpus > 0)
    logging.getLogger("ghanet").info("extract %s: %d x %d features (%s, %s, read by %s)", args.slide_id,
                                     res["n_tiles"], res["dim"], res["encoder"], res["precision"],
                                     res.get("reader", "none"))


def _record(args, why: str) -> None:
    record_failure(args.slide_id, why, features_h5=args.features)


def _claim_gpu(args) -> None:
    """A job of several slides claims one GPU for all of them, not one per slide."""
    args.device = devices.resolve(args.device, args.gpus > 0, "extract")


def _export_arguments(p) -> None:
    p.add_argument("--features", required=True, help="HDF5 written by `ghanet extract`")
    p.add_argument("--out", required=True)
    slidejob.slides_args(p)


def _export_pt(args) -> None:
    from . import features

    feats, _, _ = features.read_features(args.features)
    write_features_pt(args.out, feats)
    logging.getLogger("ghanet").info("export-pt: %d x %d features to %s", feats.shape[0], feats.shape[1], args.out)


COMMANDS = {
    "extract": slidejob.command(_arguments, _one_slide, inputs=("coords",), outputs=("features", "features_pt"),
                                record=_record, before_chunk=_claim_gpu),
    "export-pt": slidejob.command(_export_arguments, _export_pt, inputs=("features",), outputs=("out",)),
}
