"""A job's start-up: what `python -m ghanet_pipeline <command>` costs before its stage does any work.

    python benchmarks/bench_startup.py [--repo OTHER_CHECKOUT] [--repeats 7]

For each command the workflow runs: a fresh interpreter that imports the CLI and the stage's module
(what the job imports before its work; torch, pandas and the rest come with the module) and reads
its config section as a job does (the schema check), timed as a subprocess, median of `--repeats`.
Beside it: a bare `python -c pass`, and loading config.yaml with PyYAML's pure-Python loader and
with libyaml's. With `--repo`, the same for another checkout (say, a worktree of an older commit:
`git worktree add /tmp/before <commit>`), alternated with this one in the same run. With
`--encoder NAME`, also what an extraction job spends loading that encoder from the local Hugging
Face cache (random weights saved there as its hub publishes them; `encoders.load` in a fresh
process, its weights' hash included), in each checkout.
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


ENCODER_SAVE = """
import sys, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {repo!r} + "/tests")
from pathlib import Path
from ghanet_pipeline import encoders
from test_encoders import _random_weights, _save_weights, _write_cache
spec = encoders.REGISTRY[{name!r}]
_write_cache(Path({hub!r}), spec.hf_repo, {{spec.hf_files[0]: lambda p: _save_weights(_random_weights(spec, 1), spec, p)}})
"""
ENCODER_LOAD = "from ghanet_pipeline import encoders\nencoders.load({name!r}, None)\n"


def encoder_load_s(name: str, repos: dict, repeats: int) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as hub:
        os.environ["HF_HUB_CACHE"] = hub  # inherited by the timed processes
        subprocess.run([sys.executable, "-c", ENCODER_SAVE.format(repo=str(REPO), name=name, hub=hub)], check=True)
        out = {k: [] for k in repos}
        for _ in range(repeats):
            for key, repo in repos.items():
                out[key].append(timed(ENCODER_LOAD.format(name=name), repo, 1))
        return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=None, help="another checkout to time beside this one")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--encoder", default=None, help="also time loading this encoder from the local cache")
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
    if a.encoder:
        s_ = encoder_load_s(a.encoder, repos, max(1, a.repeats // 2))
        ratio = f"  {s_['this'] / s_['other']:10.2f}" if a.repo else ""
        print(f"{'load ' + a.encoder:18s}" + "".join(f" {1000 * v:12.0f}" for v in s_.values()) + ratio)


if __name__ == "__main__":
    main()
