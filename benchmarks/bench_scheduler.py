"""What Snakemake's own scheduling costs over a run of ~200 jobs, ILP scheduler against greedy.

    python benchmarks/bench_scheduler.py [--slides 43] [--folds 5] [--models 8] [--repeats 3]

A Snakefile shaped like the default run (per slide: segment -> tile -> extract; a manifest of the
cohort; per fold: genes, then one job per model; then an evaluation, heatmaps per fold and a
scoring job per model) whose jobs only sleep (`--job-seconds`, so they end one by one
as real jobs do, each end a scheduling round) and touch their output, run with `--cores 2` under each
scheduler, alternated. What is measured is Snakemake itself: the wall clock of the run and the
CPU seconds of Snakemake's process and its children (a job's `sleep` and `touch` cost a few ms
of CPU; the ILP scheduler's solver runs as a child process too). The default run's ~200 jobs are about
as many as here with the defaults.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = r'''
SLIDES = [f"S{i:03d}" for i in range(config["slides"])]
FOLDS = range(config["folds"])
MODELS = [f"m{i}" for i in range(config["models"])]

rule all:
    input: "evaluate.txt", expand("heatmaps/{fold}.txt", fold=FOLDS), expand("scored/{model}.txt", model=MODELS)

rule segment:
    output: "segment/{slide}.txt"
    shell: "sleep {config[sleep]}; touch {output}"

rule tile:
    input: "segment/{slide}.txt"
    output: "tile/{slide}.txt"
    shell: "sleep {config[sleep]}; touch {output}"

rule extract:
    input: "tile/{slide}.txt"
    output: "features/{slide}.txt"
    threads: 2
    resources: gpu=1
    shell: "sleep {config[sleep]}; touch {output}"

rule manifest:
    input: expand("features/{slide}.txt", slide=SLIDES)
    output: "manifest.txt"
    shell: "sleep {config[sleep]}; touch {output}"

rule genes:
    output: "genes/{fold}.txt"
    shell: "sleep {config[sleep]}; touch {output}"

rule train:
    input: "manifest.txt", "genes/{fold}.txt"
    output: "models/{model}/{fold}.txt"
    resources: gpu=1
    shell: "sleep {config[sleep]}; touch {output}"

rule evaluate:
    input: expand("models/{model}/{fold}.txt", model=MODELS, fold=FOLDS)
    output: "evaluate.txt"
    shell: "sleep {config[sleep]}; touch {output}"

rule heatmaps:
    input: expand("models/{model}/{{fold}}.txt", model=MODELS[:1])
    output: "heatmaps/{fold}.txt"
    shell: "sleep {config[sleep]}; touch {output}"

rule score:
    input: expand("models/{{model}}/{fold}.txt", fold=FOLDS)
    output: "scored/{model}.txt"
    shell: "sleep {config[sleep]}; touch {output}"
'''


def run_once(scheduler: str, args) -> tuple[float, float]:
    """(wall s, CPU s of Snakemake and its children) of one run from scratch."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE)
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1", "--scheduler", scheduler,
               "--nocolor", "--quiet", "all", "--config", f"slides={args.slides}", f"folds={args.folds}",
               f"models={args.models}", f"sleep={args.job_seconds}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise SystemExit(f"snakemake failed under {scheduler}:\n{proc.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu


def _count_jobs(args) -> int:
    return 3 * args.slides + 1 + args.folds * (1 + args.models) + 1 + args.folds + args.models + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=43)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--job-seconds", type=float, default=0.5,
                    help="each job sleeps this long, so jobs end one by one as real ones do (one scheduling round each)")
    args = ap.parse_args()
    runs = {"ilp": [], "greedy": []}
    for _ in range(args.repeats):
        for scheduler in runs:  # alternated, so a busy spell of the machine touches both
            runs[scheduler].append(run_once(scheduler, args))
    jobs = _count_jobs(args)
    print(f"{jobs} jobs ({args.slides} slides x 3, {args.folds} folds x {args.models} models, ...), --cores 2, "
          f"median of {args.repeats}")
    print(f"{'scheduler':10s} {'wall s':>8s} {'CPU s':>8s} {'CPU ms/job':>11s}")
    med = {}
    for scheduler, rows in runs.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        med[scheduler] = (wall, cpu)
        print(f"{scheduler:10s} {wall:8.1f} {cpu:8.1f} {1000 * cpu / jobs:11.0f}")
    print(f"greedy / ilp: wall {med['greedy'][0] / med['ilp'][0]:.2f}, CPU {med['greedy'][1] / med['ilp'][1]:.2f}")


if __name__ == "__main__":
    main()
