"""Train step (forward + backward + Adam step) time and peak memory of every registry model for
bags of 1k, 5k and 20k patches of 1,024-d features, default sizes, fp32.

    python benchmarks/bench_train_step.py [--models ghanet abmil ...] [--sizes 1000 5000 20000]
                                          [--repeats 5] [--device cpu]

Each model and bag size runs in a fresh subprocess; its memory figure is the process's peak RSS
(VmHWM) minus its RSS just before the first step, so it counts what the step itself holds. The
omic inputs have TCGA-BLCA's sizes (MCAT's table against the six signatures: 94, 334, 521, 468,
1,496 and 479 columns, 3,062 omic columns in all; G-HANet's targets a fold-0 selection).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import torch
from ghanet_pipeline import models
from ghanet_pipeline.models import build as networks
from ghanet_pipeline.config import validate_config
name, n, repeats, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss(key):
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024
torch.manual_seed(1)
selected = (10, 30, 48, 51, 188, 37)  # TCGA-BLCA fold-0 selection per family
families = (94, 334, 521, 468, 1496, 479)
dims = models.Dims(n_bins=4, in_dim=1024, family_dims=selected, omic_dim=sum(selected),
                   family_sizes=families, all_omic_dim=3062)
spec = models.spec(name)
model = networks.build(name, validate_config({{}})["model"], dims).to(device).train()
if hasattr(model, "fit_phenotypes"):
    model.fit_phenotypes(torch.randn(2000, 1024), 0)
    model.to(device)
opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
given = dict(bag=torch.randn(n, 1024, device=device), selected=torch.randn(sum(selected), device=device),
             omics=torch.randn(3062, device=device), families=[torch.randn(d, device=device) for d in families])
args = [given[k] for k in spec.inputs]
targets = [torch.randn(d, device=device) for d in selected] if spec.targets else []
y, c = torch.tensor([1], device=device), torch.tensor([0.0], device=device)
base = rss("VmRSS")
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(repeats + 1):
    if device == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    out = model(*args)
    loss = networks.loss(name, out, y, c, targets, 0.3)[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device == "cuda": torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
res = dict(model=name, n=n if spec.reads_slides else 0, step_s_median=sorted(times[1:])[len(times[1:]) // 2],
           step_s_best=min(times[1:]), peak_step_mb=rss("VmHWM") - base)
if device == "cuda":
    res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(res))
"""


def main():
    ap = argparse.ArgumentParser()
    from ghanet_pipeline import models

    ap.add_argument("--models", nargs="+", default=list(models.NAMES))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = []
    for name in args.models:
        # the SNNs read no slide: one row, the bag size does not apply
        for n in args.sizes if models.spec(name).reads_slides else args.sizes[:1]:
            proc = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), name, str(n),
                                   str(args.repeats), args.device], capture_output=True, text=True)
            if proc.returncode:
                print(json.dumps({"model": name, "n": n, "error": proc.stderr.strip().splitlines()[-1]}), flush=True)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | " + " | ".join(f"{n // 1000}k patches: step, peak" for n in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for name in args.models:
        mine = {r["n"]: r for r in rows if r["model"] == name}
        cells = [f"{mine[k]['step_s_median'] * 1e3:.0f} ms, {mine[k]['peak_step_mb']:.0f} MB" if k in mine else "-"
                 for k in (args.sizes if models.spec(name).reads_slides else [0])]
        if not models.spec(name).reads_slides:  # one omic vector a step, whatever the slides
            cells = [cells[0] + " (no bag: omics)"] + ["-"] * (len(args.sizes) - 1)
        print(f"| {name} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
