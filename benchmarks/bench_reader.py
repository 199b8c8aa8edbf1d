"""Tile reading for extraction: the stored-tile reader (each stored JPEG tile decoded once) against
OpenSlide's read_region, alone and inside the whole stage, next to the encoder's own forward.

Two generated slides in Aperio's layout (240 px RGB-coded JPEG tiles, 4x pyramid levels): one at
0.25 um/px (40x; no 0.5 um/px level, so every 256 px tile at 0.5 um/px is 512 level-0 px read and
resized) and one at 0.5 um/px (20x; 256 px read as is), tiled as the workflow tiles them. In one
process and one run, per slide:
  * read:    patches/s of reading + resizing every tile, per reader (no model), with the number of
             stored-tile decodes per distinct stored tile the patches touch;
  * stage:   `extract.extract_tiles` patches/s (read, resize, normalise, infer) per reader, on the
             first --tiles tiles, for each encoder;
  * forward: the encoder alone on random input of the same batch (the ceiling); stage / forward
             is the figure to watch (aim >= 0.9).

    python benchmarks/bench_reader.py [--tiles 256] [--workers 2] [--encoders resnet50_trunc,efficientnet_lite0]
    python benchmarks/bench_reader.py --device cuda --tiles 8192 --workers 14 --batch-size 256 --encoders resnet50_trunc

Readers (--readers): openslide; auto (stored tiles decoded by libjpeg-turbo in the reader threads);
device (stored tiles decoded, assembled and resized on --device: nvJPEG on a GPU).

Model weights are random: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_extract import forward_rate, setup, sync  # noqa: E402
from ghanet_pipeline import demo, encoders, extract, formats, segment, tile  # noqa: E402
from ghanet_pipeline.config import validate_config  # noqa: E402


def bench_slide(out: Path, mpp: float, width: int, height: int) -> tuple[Path, Path]:
    slide = out / f"bench_reader_{width}x{height}_{mpp}mpp.svs"
    if not slide.exists():
        demo.render_slide(slide, width=width, height=height, mpp=mpp, z=np.array([0.4, 0.3, 0.3]), seed=11,
                          aperio=True)
    cfg = validate_config({"tile": {"min_coverage": 0.05, "max_ink_fraction": 1.0}})
    coords = out / f"{slide.stem}.coords.h5"
    if not coords.exists():
        segment.run(str(slide), "bench", cfg["segment"], geojson=out / "r.geojson", qc_png=out / "r.jpg",
                    stats_json=out / "r.json")
        tile.run(str(slide), "bench", cfg["tile"], contours=out / "r.geojson", coords_h5=coords,
                 qc_png=out / "r.tile.jpg")
    return slide, coords


def touched_tiles(coords, attrs, stored) -> set:
    """The stored tiles the patches at `coords` cover."""
    read, out = formats.tile_sizes(attrs)[0], set()
    for x, y in coords:
        lx, ly = int(x / stored.downsample), int(y / stored.downsample)
        out |= {(tx, ty) for ty in range(ly // stored.th, (ly + read - 1) // stored.th + 1)
                for tx in range(lx // stored.tw, (lx + read - 1) // stored.tw + 1)}
    return out


def read_rate(slide, coords, attrs, size, batch, workers, slide_reader, dev) -> dict:
    reader = extract.TileReader(slide, coords, int(attrs["patch_level"]), formats.tile_sizes(attrs)[0], size,
                                batch, slide_reader, dev)
    t = time.perf_counter()
    n = sum(len(imgs) for imgs, _, _ in reader.batches(workers))
    sync(dev)
    seconds = time.perf_counter() - t
    row = {"reader": reader.name, "read_pps": round(n / seconds, 1)}
    decoder = reader._on_device or reader._stored
    if decoder is not None:
        row["decodes_per_stored_tile"] = round(decoder.decoded / len(touched_tiles(coords, attrs, reader._stored)), 3)
    reader.close()
    return row


def stage_rate(net, slide, coords, attrs, reading) -> float:
    extract.extract_tiles(net, slide, "bench", coords[:reading.batch_size], attrs,
                          extract.Reading(reading.batch_size, 0, slide_reader=reading.slide_reader))  # warm-up
    sync(net.dev)
    t = time.perf_counter()
    extract.extract_tiles(net, slide, "bench", coords, attrs, reading)
    sync(net.dev)
    return len(coords) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiles", type=int, default=256, help="tiles timed through the whole stage")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="reader threads")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--encoders", default="resnet50_trunc,efficientnet_lite0")
    ap.add_argument("--readers", default="openslide,auto,device")
    ap.add_argument("--out", default=str(REPO / "bench-out"))
    args = ap.parse_args()
    dev, out = setup(args)
    slides = {"40x (0.25 um/px)": bench_slide(out, 0.25, 32768, 24576),
              "20x (0.5 um/px)": bench_slide(out, 0.5, 16384, 12288)}
    print(f"device={dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), torch threads="
          f"{torch.get_num_threads()}, reader threads {args.workers}, batch {args.batch_size}, "
          f"cpu bf16 units={encoders.cpu_supports_bf16()}", flush=True)
    results = []
    for label, (slide, coords_h5) in slides.items():
        coords, attrs = formats.read_coords(coords_h5)
        readers = args.readers.split(",")
        for slide_reader in readers:
            row = {"slide": label, "tiles": len(coords), "read_size": formats.tile_sizes(attrs)[0],
                   **read_rate(slide, coords, attrs, 224, args.batch_size, args.workers, slide_reader, dev)}
            results.append(row)
            print(json.dumps(row), flush=True)
        timed = coords[:args.tiles]
        for name in args.encoders.split(","):
            spec, model, _ = encoders.load(name, encoders.RANDOM)
            fmt = torch.channels_last
            dtype = encoders.autocast_dtype(spec, "auto", dev)
            net = extract.Net(model.to(dev, memory_format=fmt), spec, dev, dtype, fmt)
            n_batches = max(2, len(timed) // args.batch_size)
            fwd = forward_rate(model, spec, dev, dtype, fmt, args.batch_size, n_batches)
            row = {"slide": label, "encoder": name, "precision": str(dtype or "fp32"), "forward_pps": round(fwd, 1)}
            for slide_reader in readers:
                rate = stage_rate(net, slide, timed, attrs, extract.Reading(args.batch_size, args.workers,
                                                                             slide_reader=slide_reader))
                row[f"stage_pps_{slide_reader}"] = round(rate, 1)
            row["forward_again_pps"] = round(forward_rate(model, spec, dev, dtype, fmt, args.batch_size, n_batches), 1)
            ceiling = max(row["forward_pps"], row["forward_again_pps"])
            row.update({f"ratio_{r}": round(row[f"stage_pps_{r}"] / ceiling, 3) for r in readers})
            results.append(row)
            print(json.dumps(row), flush=True)
    (out / f"bench_reader_{dev.type}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
