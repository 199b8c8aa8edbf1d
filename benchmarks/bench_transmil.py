"""TransMIL's training step on a CPU: our Nystrom attention against the `nystrom_attention` package's
(the module the official code imports), the same weights, in the same run.

    python benchmarks/bench_transmil.py [--sizes 60 250 1000 5000 20000] [--repeats 5] [--threads 1]

Per bag size: forward + backward + Adam step of the whole TransMIL at the official settings
(model.hidden_dim 512: 8 heads of 64, 256 landmarks, 6 pseudo-inverse iterations), 1,280-d
features, median of `--repeats` after a warm-up, the two attentions alternated; and the largest
difference of the two steps' losses (they run the same weights and the same dropout draws). Then a
torch.profiler table of one step at the smallest size with the package's attention: where its
time goes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nystrom_attention import NystromAttention as Package  # noqa: E402

from ghanet_pipeline.models import build as networks  # noqa: E402
from ghanet_pipeline.models.registry import Dims  # noqa: E402

MODEL = {"hidden_dim": 512, "dropout": 0.25}


def with_package_attention(model):
    """The same TransMIL with the package's NystromAttention in both layers (weights copied)."""
    other = copy.deepcopy(model)
    for name in ("attn1", "attn2"):
        ours = getattr(model, name)
        theirs = Package(dim=512, dim_head=64, heads=8, num_landmarks=256, pinv_iterations=6, residual=True,
                         dropout=0.1)
        theirs.load_state_dict(ours.state_dict())
        setattr(other, name, theirs)
    return other


def step_seconds(model, x, repeats: int) -> tuple[float, float]:
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
    y, c = torch.tensor([1]), torch.tensor([0.0])

    def step() -> float:
        torch.manual_seed(0)  # the same dropout draws for both attentions
        out = model(x)
        loss = networks.loss("transmil", out, y, c, [], 0.0)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    step()
    times, loss = [], 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[60, 250, 1000, 5000, 20000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"TransMIL train step, {a.threads} thread(s), median of {a.repeats}")
    print(f"{'patches':>8s} {'package ms':>11s} {'ours ms':>9s} {'ours/package':>13s} {'|loss diff|':>12s}")
    for n in a.sizes:
        torch.manual_seed(1)
        ours = networks.build("transmil", MODEL, Dims(n_bins=4, in_dim=1280)).train()
        theirs = with_package_attention(ours)
        x = torch.randn(n, 1280)
        t_theirs, l_theirs = step_seconds(theirs, x, a.repeats)
        t_ours, l_ours = step_seconds(ours, x, a.repeats)
        print(f"{n:8d} {1000 * t_theirs:11.0f} {1000 * t_ours:9.0f} {t_ours / t_theirs:13.3f} "
              f"{abs(l_ours - l_theirs):12.1e}")
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(1)
    model = with_package_attention(networks.build("transmil", MODEL, Dims(n_bins=4, in_dim=1280)).train())
    x = torch.randn(min(a.sizes), 1280)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step_seconds(model, x, 1)
    print(f"\nOne step with the package's attention, {min(a.sizes)} patches (torch.profiler, self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
