"""Feature extraction throughput: the whole stage's tile loop next to the encoder's own forward.

For each configuration, in one process and one run:
  * forward: the encoder alone on random input of the same batch size, same precision and memory
    format (the ceiling);
  * stage:   `extract.extract_tiles` on a generated 0.25-mpp slide, tiles of 256 px at 0.5 mpp
    (512 level-0 px read and resized), i.e. reading + resizing + normalising + inference;
and prints patches/s of both and their ratio (the figure to watch; aim >= 0.95), the median over
`--rounds` forward / stage pairs (a shared machine's speed drifts between seconds).

    python benchmarks/bench_extract.py [--tiles 256] [--batch-size 64] [--workers 1] [--rounds 5]
    python benchmarks/bench_extract.py --device cuda --tiles 4096 --configs resnet50_trunc:bf16:cl

Model weights are random (`weights: random`): speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ghanet_pipeline import demo, encoders, extract, formats, segment, tile  # noqa: E402
from ghanet_pipeline.config import validate_config  # noqa: E402


def bench_slide(out: Path, width: int, height: int) -> tuple[Path, Path]:
    slide = out / f"bench_extract_{width}x{height}_0.25mpp.tiff"
    if not slide.exists():
        demo.render_slide(slide, width=width, height=height, mpp=0.25, z=np.array([0.4, 0.3, 0.3]), seed=7)
    cfg = validate_config({"tile": {"min_coverage": 0.05}})
    coords = out / f"{slide.stem}.coords.h5"
    segment.run(str(slide), "bench", cfg["segment"], geojson=out / "b.geojson", qc_png=out / "b.png",
                stats_json=out / "b.json")
    tile.run(str(slide), "bench", cfg["tile"], contours=out / "b.geojson", coords_h5=coords,
             qc_png=out / "b.tile.png")
    return slide, coords


def setup(args) -> tuple[torch.device, Path]:
    """The device (--device, auto: CUDA where there is one), torch threads and the output folder."""
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return dev, out


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def forward_rate(model, spec, dev, dtype, fmt, batch, n_batches) -> float:
    x = torch.randn(batch, 3, spec.input_size, spec.input_size, device=dev).contiguous(memory_format=fmt)

    def step():
        if dtype is None:
            return model(x)
        with torch.autocast(dev.type, dtype=dtype):
            return model(x)

    for _ in range(2):
        step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(n_batches):
        step().float().cpu()  # the stage copies features back too
    sync(dev)
    return batch * n_batches / (time.perf_counter() - t)


def stage_rate(net, slide, coords_h5, reading, n_tiles) -> float:
    coords, attrs = formats.read_coords(coords_h5)
    # a GPU needs more tiles than one small slide has: cycle through its tissue tiles
    coords = np.resize(coords, (n_tiles, 2))
    # warm-up on one batch so both figures exclude first-call costs
    extract.extract_tiles(net, str(slide), "bench", coords[:reading.batch_size], attrs,
                          extract.Reading(reading.batch_size, 0, slide_reader=reading.slide_reader))
    sync(net.dev)
    t = time.perf_counter()
    extract.extract_tiles(net, str(slide), "bench", coords, attrs, reading)
    sync(net.dev)
    return len(coords) / (time.perf_counter() - t)


def read_rate(slide, coords_h5, reading, n_tiles, input_size) -> float:
    """Patches/s of the reading alone, as the stage on a CPU reads (its threads taking turns with
    the model: here with nothing), the same tiles."""
    coords, attrs = formats.read_coords(coords_h5)
    coords = np.resize(coords, (n_tiles, 2))
    reader = extract.TileReader(str(slide), coords, int(attrs["patch_level"]), formats.tile_sizes(attrs)[0],
                                input_size, reading.batch_size, reading.slide_reader)
    t = time.perf_counter()
    for _ in reader.batches(reading.workers, reading.processes, torch.get_num_threads()):
        pass
    reader.close()
    return n_tiles / (time.perf_counter() - t)


def reading_profile(slide, coords_h5, out_size: int, batch: int) -> dict:
    """Milliseconds per patch of one core for each step of the CPU reading, on the slide's tissue
    tiles: decoding the stored tiles they touch (each once), assembling patches from them,
    resizing to the encoder input, and the normalisation of a batch on the model's side."""
    import cv2
    import openslide
    import simplejpeg

    from ghanet_pipeline.stored_tiles import StoredTiles

    cv2.setNumThreads(1)
    coords, attrs = formats.read_coords(coords_h5)
    read = formats.tile_sizes(attrs)[0]
    with openslide.OpenSlide(str(slide)) as s:
        stored, _ = StoredTiles.open(slide, s, int(attrs["patch_level"]))
    xy = [(int(x), int(y)) for x, y in coords]
    tiles = sorted({i for x, y in xy for i, _, _ in stored.pieces(x, y, read)})
    jpegs = [stored.jpeg(i) for i in tiles]
    t = time.perf_counter()
    for j in jpegs:
        simplejpeg.decode_jpeg(j, colorspace="RGB", strict=True)
    decode = time.perf_counter() - t
    for x, y in xy[:8]:
        stored.patch(x, y, read)  # fills the cache for the patches timed below
    t = time.perf_counter()
    for _ in range(8):
        for x, y in xy[:8]:
            stored.patch(x, y, read)  # dropped at once, as the reader drops it after the resize
    assemble = (time.perf_counter() - t) / 64
    patches = [stored.patch(x, y, read) for x, y in xy[:8]]
    t = time.perf_counter()
    for _ in range(8):
        for p in patches:
            cv2.resize(p, (out_size, out_size), interpolation=cv2.INTER_AREA)
    resize = (time.perf_counter() - t) / 64
    stored.close()
    imgs = torch.randint(0, 256, (batch, out_size, out_size, 3), dtype=torch.uint8)
    t = time.perf_counter()
    for _ in range(4):
        imgs.permute(0, 3, 1, 2).float().mul_(0.5).sub_(0.5).contiguous(memory_format=torch.channels_last)
    norm = (time.perf_counter() - t) / 4 / batch * torch.get_num_threads()  # per patch, of one core
    return {"stored_tiles_per_patch": round(len(tiles) / len(xy), 2),
            "decode_ms": round(1e3 * decode / len(xy), 3), "assemble_ms": round(1e3 * assemble, 3),
            "resize_ms": round(1e3 * resize, 3), "normalise_ms": round(1e3 * norm, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiles", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compare-overlap", action="store_true",
                    help="also time the reader running beside the model (lockstep off), in the same rounds")
    ap.add_argument("--rounds", type=int, default=5, help="forward / stage pairs; the median ratio is reported")
    ap.add_argument("--reader", choices=["threads", "processes"], default="threads")
    ap.add_argument("--slide-reader", choices=["auto", "openslide"], default="auto")
    ap.add_argument("--slide-size", default="24000x18000")
    ap.add_argument("--out", default=str(REPO / "bench-out"))
    ap.add_argument("--configs", default=None,
                    help="comma list of encoder:precision[:cl], e.g. resnet50_trunc:fp32:cl")
    args = ap.parse_args()
    dev, out = setup(args)
    w, h = map(int, args.slide_size.split("x"))
    slide, coords_h5 = bench_slide(out, w, h)
    n_avail = len(formats.read_coords(coords_h5)[0])

    if args.configs:
        configs = [tuple(c.split(":")) for c in args.configs.split(",")]
    elif dev.type == "cuda":
        configs = [("resnet50_trunc", "fp32", "cl"), ("resnet50_trunc", "bf16", "cl"),
                   ("efficientnet_lite0", "bf16", "cl")]
    else:
        configs = [("resnet50_trunc", "fp32", "cl"), ("efficientnet_lite0", "fp32", "cl")]
        if encoders.cpu_supports_bf16():  # what precision: auto takes on this CPU
            configs += [("resnet50_trunc", "bf16", "cl"), ("efficientnet_lite0", "bf16", "cl")]
    n_tiles = args.tiles
    print(f"device={dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), "
          f"torch threads={torch.get_num_threads()}, cpu bf16 units={encoders.cpu_supports_bf16()}, "
          f"slide {w}x{h} at 0.25 mpp with {n_avail} tiles, timing {n_tiles}, batch {args.batch_size}, "
          f"workers {args.workers}, {args.rounds} rounds")
    results = []
    if dev.type == "cpu":
        prof = reading_profile(slide, coords_h5, 224, args.batch_size)
        print("reading, ms of one core per patch:", json.dumps(prof), flush=True)
        results.append({"reading_profile": prof})
    for enc, prec, cl in configs:
        spec, model, _ = encoders.load(enc, encoders.RANDOM)
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = model.to(dev, memory_format=fmt)
        dtype = encoders.autocast_dtype(spec, prec, dev)
        n_batches = max(2, n_tiles // args.batch_size)
        processes = args.reader == "processes"
        net = extract.Net(model, spec, dev, dtype, fmt)
        reading = extract.Reading(args.batch_size, args.workers, processes, args.slide_reader)
        # a shared machine's speed drifts over seconds: forward and stage alternate, each round's
        # stage is compared with the forward measured just before it, and the median is reported
        modes = {"default": reading}
        if args.compare_overlap:  # the reader beside the model, as before lockstep reading on a CPU
            modes["overlapped"] = dataclasses.replace(reading, lockstep=False)
        fwd, stg, rd = [], {m: [] for m in modes}, []
        for _ in range(args.rounds):
            fwd.append(forward_rate(model, spec, dev, dtype, fmt, args.batch_size, n_batches))
            for m, r in modes.items():
                stg[m].append(stage_rate(net, slide, coords_h5, r, n_tiles))
            if dev.type == "cpu":
                rd.append(read_rate(slide, coords_h5, reading, n_tiles, spec.resize or spec.input_size))
        # on a CPU the reading and the model share the cores: at best the stage takes the sum of
        # their times (reading at r patches/s alone, the model at f), a ratio of r / (r + f)
        bound = [r / (r + f) for r, f in zip(rd, fwd)]
        for m in modes:
            ratios = [s / f for s, f in zip(stg[m], fwd)]
            row = dict(encoder=enc, precision=prec, channels_last=bool(cl), reading=m,
                       reader="processes" if processes else "threads",
                       forward_pps=round(float(np.median(fwd)), 1), stage_pps=round(float(np.median(stg[m])), 1),
                       ratio=round(float(np.median(ratios)), 3), ratio_range=[round(min(ratios), 3), round(max(ratios), 3)],
                       **(dict(read_alone_pps=round(float(np.median(rd)), 1),
                               ratio_if_reading_adds=round(float(np.median(bound)), 3)) if rd else {}))
            results.append(row)
            print(json.dumps(row), flush=True)
    (out / f"bench_extract_{dev.type}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
