"""Dry-run time of the whole DAG for large cohorts, and the cluster submissions of the SLURM profile.

    python benchmarks/bench_dag.py [--slides 1000 10000] [--slides-per-job 1 100]

For each size and each `slides_per_job`: a slide sheet of N slides (one patient each; the slide
files need not exist), a small clinical table and signatures, then `snakemake -n` (local) and
`snakemake -n --profile workflow/profiles/slurm` timed as subprocesses, and next to them, in the
same run, a trivial Snakefile with as many slide jobs (one rule per stage, the same chain per
slide or chunk, no params or input functions): what Snakemake itself costs for that many jobs.
Submissions = jobs outside any group + group jobs (the profile packs segment+tile of 100 slides
and extraction of 20 slides per submission; chunk jobs are not grouped).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent


def make_cohort(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    ids = [f"P{i:05d}" for i in range(n)]
    # empty files where the slides are: Snakemake checks each slide's time, as in a real cohort
    (root / "slides").mkdir()
    for p in ids:
        (root / f"slides/{p}-S1.svs").touch()
    pd.DataFrame({"slide_id": [f"{p}-S1" for p in ids], "case_id": ids,
                  "path": [str(root / f"slides/{p}-S1.svs") for p in ids], "mpp": 0.25}).to_csv(
        root / "slides.csv", index=False)
    fams = ["Tumor Suppressor Genes", "Oncogenes", "Protein Kinases", "Cell Differentiation Markers",
            "Transcription Factors", "Cytokines and Growth Factors"]
    genes = {f: [f"G{j}{k}" for k in range(3)] for j, f in enumerate(fams)}
    pd.DataFrame(genes).to_csv(root / "signatures.csv", index=False)
    clin = pd.DataFrame({"case_id": ids, "slide_id": [f"{p}-S1" for p in ids],
                         "survival_months": rng.exponential(30, n).round(2) + 0.1,
                         "censorship": (rng.random(n) < 0.4).astype(int)})
    for g in sum(genes.values(), []):
        clin[f"{g}_rnaseq"] = rng.normal(size=n).round(3)
    clin.to_csv(root / "clinical.csv", index=False)
    cfg = {"cohort": {"slide_sheet": str(root / "slides.csv"), "clinical": str(root / "clinical.csv"),
                      "signatures": str(root / "signatures.csv")}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "config.yaml"


def dry_run(root: Path, cfg: Path, per_job: int, *extra) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(root),
           "--configfile", str(cfg), "--config", f"slides_per_job={per_job}", "--nocolor", "--quiet", "rules",
           *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return dt, proc.stdout + proc.stderr


TRIVIAL = """
import csv
IDS = [r["slide_id"] for r in csv.DictReader(open(config["sheet"]))]

rule all:
    input: expand("out/{s}.c", s=IDS), "out/cohort.done"

rule a:
    output: "out/{s}.a"
    shell: "touch {output}"

rule b:
    input: "out/{s}.a"
    output: "out/{s}.b"
    shell: "touch {output}"

rule c:
    input: "out/{s}.b"
    output: "out/{s}.c"
    shell: "touch {output}"

rule cohort:
    input: expand("out/{s}.c", s=IDS)
    output: "out/cohort.done"
    shell: "touch {output}"
"""


def trivial_run(root: Path, units: int) -> float:
    """Dry-run seconds of a Snakefile with 3 jobs per unit (slide or chunk) and one cohort job."""
    (root / "Trivial").write_text(TRIVIAL)
    (root / "units.csv").write_text("slide_id\n" + "".join(f"U{i:05d}\n" for i in range(units)))
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(root / "Trivial"), "--directory", str(root),
           "--config", f"sheet={root / 'units.csv'}", "--cores", "8", "--nocolor", "--quiet", "rules"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return time.perf_counter() - t


def job_counts(text: str) -> dict:
    counts = {}
    for line in text.split("Job stats:")[-1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--slides-per-job", type=int, nargs="+", default=[1, 100])
    a = ap.parse_args()
    prof = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    groups, sizes = prof["groups"], prof["group-components"]
    for n in a.slides:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            cfg = make_cohort(root, n)
            for per_job in a.slides_per_job:
                local_s, out = dry_run(root, cfg, per_job, "--cores", "8")
                jobs = job_counts(out)
                slurm_s, _ = dry_run(root, cfg, per_job, "--profile", str(REPO / "workflow/profiles/slurm"))
                units = -(-n // per_job)
                trivial_s = trivial_run(root, units)
                # each group packs `size` connected components; segment->tile of one slide is one component
                grouped = {g: max(jobs.get(r, 0) for r, gg in groups.items() if gg == g) for g in set(groups.values())}
                submissions = (sum(c for r, c in jobs.items() if r not in groups and r != "all")
                               + sum(-(-grouped[g] // sizes[g]) for g in grouped))
                print(f"{n} slides, {per_job} per job: dry run {local_s:.1f} s (local), {slurm_s:.1f} s (slurm "
                      f"profile), {trivial_s:.1f} s (trivial Snakefile, {3 * units + 1} jobs); "
                      f"{sum(jobs.values())} jobs; SLURM submissions {submissions} "
                      f"({', '.join(f'{r} {c}' for r, c in jobs.items())})", flush=True)


if __name__ == "__main__":
    main()
