"""A job's start-up: what `python -m ghanet_pipeline <command>` costs before its stage does any work.

    python benchmarks/bench_startup.py [--repo OTHER_CHECKOUT] [--repeats 7]

For each command the workflow runs: a fresh interpreter that imports the CLI and the stage's module
(what the job imports before its work; torch, pandas and the rest come with the module) and reads
its config section as a job does (the schema check), timed as a subprocess, median of `--repeats`.
Beside it: a bare `python -c pass`, and loading config.yaml with PyYAML's pure-Python loader and
with libyaml's. With `--repo`, the same for another checkout (say, a worktree of an older commit:
`git worktree add /tmp/before <commit>`), alternated with this one in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# command -> the module its job imports (the CLI's table in cli.py; the same in older checkouts)
STAGES = {"segment": "segment", "tile": "tile", "extract": "extract", "splits": "splits", "genes": "genes",
          "train": "train", "evaluate": "evaluate", "predict": "predict", "validate": "validate",
          "heatmaps": "heatmap", "feature-manifest": "features", "slide-report": "report", "demo-cohort": "demo"}
JOB = ("import ghanet_pipeline.cli, ghanet_pipeline.{module}\n"
       "from ghanet_pipeline.config import validate_config\n"
       "validate_config({{}})\n")


def timed(code: str, repo: Path, repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"}
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, check=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def yaml_load_ms(loader: str, repo: Path, repeats: int = 20) -> float:
    import yaml

    text = (repo / "workflow/schemas/config.schema.yaml").read_text()
    cls = getattr(yaml, loader)
    t = time.perf_counter()
    for _ in range(repeats):
        yaml.load(text, Loader=cls)
    return 1000 * (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=None, help="another checkout to time beside this one")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    repos = {"this": REPO, **({"other": a.repo.resolve()} if a.repo else {})}
    print(f"bare interpreter: {1000 * timed('pass', REPO, a.repeats):.0f} ms")
    print(f"the schema's YAML: pure-Python loader {yaml_load_ms('SafeLoader', REPO):.1f} ms, "
          f"libyaml {yaml_load_ms('CSafeLoader', REPO):.1f} ms")
    head = f"{'command':18s}" + "".join(f" {name + ' ms':>12s}" for name in repos)
    print(head + ("  this/other" if a.repo else ""))
    for command, module in STAGES.items():
        ms = {}
        for name, repo in repos.items():  # alternated per command, so a busy spell touches both
            ms[name] = 1000 * timed(JOB.format(module=module), repo, a.repeats)
        ratio = f"  {ms['this'] / ms['other']:10.2f}" if a.repo else ""
        print(f"{command:18s}" + "".join(f" {v:12.0f}" for v in ms.values()) + ratio)


if __name__ == "__main__":
    main()
