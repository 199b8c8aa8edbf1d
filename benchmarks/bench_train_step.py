"""G-HANet train step (forward + backward + Adam step) time and peak memory for bags of 1k, 5k
and 20k patches of 1,024-d features, default architecture, fp32.

    python benchmarks/bench_train_step.py [--sizes 1000 5000 20000] [--repeats 5] [--device cpu]

Each bag size runs in a fresh subprocess; its memory figure is the process's peak RSS (VmHWM)
minus its RSS just before the first step, so it counts what the step itself holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import torch
from ghanet_pipeline.model import GHANet, ghanet_loss
n, repeats, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss(key):
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024
torch.manual_seed(1)
dims = [10, 30, 48, 51, 188, 37]  # TCGA-BLCA fold-0 family sizes
model = GHANet(dims).to(device).train()
opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
x = torch.randn(n, 1024, device=device)
targets = [torch.randn(d, device=device) for d in dims]
y, c = torch.tensor([1], device=device), torch.tensor([0], device=device)
base = rss("VmRSS")
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(repeats + 1):
    if device == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    out = model(x)
    loss = ghanet_loss(out, y, c, targets)[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device == "cuda": torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
res = dict(n=n, step_s_median=sorted(times[1:])[len(times[1:]) // 2], step_s_best=min(times[1:]),
           peak_step_mb=rss("VmHWM") - base)
if device == "cuda":
    res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(res))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        proc = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(n),
                               str(args.repeats), args.device], capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"memory per extra 1k patches: {(b['peak_step_mb'] - a['peak_step_mb']) / (b['n'] - a['n']) * 1000:.1f} MB")


if __name__ == "__main__":
    main()
