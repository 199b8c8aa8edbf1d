"""Patches/s and peak memory of every registered encoder on this machine, so users can plan.

Each encoder runs in a process of its own (so its peak resident memory is its own): random
weights (speed does not depend on their values), batch 16 at the encoder's input size, the
precision `extract.precision: auto` picks here (bf16 on a CPU with bf16 units, else fp32), one
warm-up batch, then timed batches for at least --seconds. One run, so the figures compare.

    python benchmarks/bench_encoders.py [--batch-size 16] [--seconds 20] [--only uni,h0-mini]
    python benchmarks/bench_encoders.py --device cuda

Writes bench-out/bench_encoders.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def one(name: str, batch_size: int, seconds: float, device: str) -> dict:
    """Runs in the child: build, warm up, time."""
    import torch

    from ghanet_pipeline import encoders

    t0 = time.perf_counter()
    spec, model, _ = encoders.load(name, encoders.RANDOM)
    dev = torch.device(device)
    model = model.to(dev)
    dtype = encoders.autocast_dtype(spec, "auto", dev)
    build_s = time.perf_counter() - t0
    x = torch.rand(batch_size, 3, spec.input_size, spec.input_size, device=dev)

    def step():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    assert step().shape == (batch_size, spec.dim)  # warm-up
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    elapsed = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"encoder": name, "dim": spec.dim, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
            "batch_size": batch_size, "batches": n, "patches_per_s": n * batch_size / elapsed,
            "build_s": build_s, "peak_rss_mb": peak_mb,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="time each encoder for at least this long")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated names (default: every registry entry)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.batch_size, args.seconds, args.device)))
        return

    from ghanet_pipeline import encoders

    names = args.only.split(",") if args.only else list(encoders.REGISTRY)
    rows = []
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--batch-size", str(args.batch_size),
                               "--seconds", str(args.seconds), "--device", args.device],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed: {proc.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{name}: {r['patches_per_s']:.2f} patches/s, peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    out = REPO / "bench-out"
    out.mkdir(exist_ok=True)
    (out / "bench_encoders.json").write_text(json.dumps(rows, indent=1))
    print(f"| encoder | dim | params | precision | patches/s (batch {args.batch_size}) | peak RSS | build |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['encoder']}` | {r['dim']} | {r['params_m']:.0f}M | {r['precision']} | "
              f"{r['patches_per_s']:.2f} | {r['peak_rss_mb'] / 1024:.1f} GiB | {r['build_s']:.0f} s |")


if __name__ == "__main__":
    main()
