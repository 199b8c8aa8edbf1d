"""Kill and rerun: the extract and train jobs of a finished tiny demo are SIGKILLed (as an OOM
killer, a scheduler or a dead node does) and rerun from what the kill left. Every rerun must give
the uninterrupted run's results exactly, and a file at an output path is never partial (outputs
are written under a temporary name and renamed into place).

- At random points (seeded), 10 times per stage: the job's own command (`ghanet extract` /
  `ghanet train`, the arguments its rule passes, read from a Snakemake dry run) in a process
  forked from a server that has imported torch and timm once (tests/job_server.py), so a trial
  costs the job's work rather than its ~5 s of imports. The kills land anywhere from start-up to the last write.
- Through Snakemake: the extract job alone killed mid-run (Snakemake sees it fail and removes its
  outputs), and Snakemake killed together with the train job the moment its first output appears
  (nothing cleans up; the rerun removes the stale lock with `--unlock`, and `--rerun-incomplete`,
  which both shipped profiles set, redoes outputs the dead run had not finished recording).
"""

import contextlib
import filecmp
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from conftest import REPO, TINY_DEMO, tool_env, write_config
from ghanet_pipeline.stamps import stamp_path

pytestmark = pytest.mark.slow

TRIALS = 10

# stage -> the outputs of the job under test, relative to the work dir
OUTPUTS = {
    "extract": ["results/features/efficientnet_lite0/DEMO-002-S2.h5"],
    "train": [f"results/models/ghanet/fold_1/{f}" for f in
              ("model.pt", "risks.csv", "reconstruction.csv", "train_log.csv", "loss.png")],
}


def _attrs_equal(a, b) -> bool:
    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _same(path, ref) -> bool:
    """Equal results: features and checkpoints value by value, tables and images byte by byte
    (the training log's wall-clock column aside)."""
    if path.suffix == ".h5":
        with h5py.File(path) as fa, h5py.File(ref) as fb:
            return (sorted(fa) == sorted(fb) and _attrs_equal(fa.attrs, fb.attrs) and all(
                np.array_equal(fa[k][:], fb[k][:]) and _attrs_equal(fa[k].attrs, fb[k].attrs) for k in fa))
    if path.suffix == ".pt":
        ca, cb = (torch.load(p, map_location="cpu", weights_only=False) for p in (path, ref))
        sa, sb = ca.pop("state_dict"), cb.pop("state_dict")
        return ca == cb and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    if path.name == "train_log.csv":
        a, b = (pd.read_csv(p).drop(columns="seconds") for p in (path, ref))
        return a.equals(b)
    return filecmp.cmp(path, ref, shallow=False)


def _check(work, ref, outputs, what, complete: bool) -> None:
    for rel in outputs:
        path = work / rel
        if complete or path.exists():
            assert path.exists() and _same(path, ref / rel), f"{what}: {rel} differs from the uninterrupted run's"
    if complete:  # the rerun's writes removed what the killed writers left behind
        for rel in outputs:
            left = list((work / rel).parent.glob(f".{(work / rel).name}.tmp-*"))
            assert not left, f"{what}: temporary files of a killed job remain: {left}"


def _nothing_else_changed(work, ref) -> None:
    """Every other result of the run is still there, byte for byte (logs and timings aside; the
    trials' own outputs are compared value by value)."""
    skip = {"logs", "benchmarks"}
    trials = {rel for outs in OUTPUTS.values() for rel in outs}
    trials |= {str(stamp_path(rel)) for rel in trials}  # the trial job's own stamp, with its (absolute) paths
    for path in (ref / "results").rglob("*"):
        rel = path.relative_to(ref)
        if path.is_dir() or skip & set(rel.parts) or str(rel) in trials or rel.name == "failures.csv":
            continue
        assert filecmp.cmp(path, work / rel, shallow=False), f"{rel} changed or was lost"


def _snakemake(work, *args):
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
            "--nocolor", "--cores", "2", "--configfile", str(work / "config.yaml"), *args]


def _job_argv(work, stage) -> list[str]:
    """The job's command as its rule runs it (from a dry run), as arguments of `ghanet`."""
    proc = subprocess.run(_snakemake(work, "-n", "-p", "--forcerun", stage, "--", OUTPUTS[stage][0]),
                          capture_output=True, text=True, env=tool_env(), cwd=work)
    line = next(x for x in proc.stdout.splitlines() if "-m ghanet_pipeline " + stage in x)
    argv = shlex.split(line)
    argv = argv[argv.index("ghanet_pipeline") + 1:]
    return [str(work / a) if a.startswith("results/") else a for a in argv[:argv.index("2>")]]


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    """A copy of the finished tiny demo (files and Snakemake's records) for the trials to damage."""
    work = tmp_path_factory.mktemp("faults") / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    write_config(work / "config.yaml", TINY_DEMO)
    return work


class JobServer:
    """tests/job_server.py: jobs forked from a process that imported the stages once."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "job_server.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=tool_env(),
                                     cwd=REPO)

    def start(self, argv) -> int:
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def wait(self) -> int:
        """The job's wait status: 0 when it exited 0."""
        return int(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)


@pytest.fixture(scope="module")
def jobs():
    server = JobServer()
    assert server.start(["--help"]) > 0 and server.wait() == 0  # imports done before any timing
    yield server
    server.close()


def _running(pid) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("stage", list(OUTPUTS))
def test_jobs_killed_at_random_points_rerun_to_the_same_results(finished, tiny_run, jobs, stage):
    outputs = OUTPUTS[stage]
    argv = _job_argv(finished, stage)
    rng = np.random.default_rng({"extract": 8, "train": 9}[stage])
    # the uninterrupted job: how long it lives (the kills fall anywhere in it), and its results; the
    # shorter of two runs, as a first run can be slowed by cold caches and kills past the end miss
    lives = []
    for _ in range(2):
        t0 = time.monotonic()
        jobs.start(argv)
        assert jobs.wait() == 0
        lives.append(time.monotonic() - t0)
        _check(finished, tiny_run, outputs, f"{stage}, uninterrupted", complete=True)
    life = min(lives)
    hits = 0
    for trial in range(TRIALS):
        delay = float(rng.uniform(0, life))
        pid = jobs.start(argv)
        time.sleep(delay)
        hits += _running(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        jobs.wait()
        what = f"{stage} trial {trial} (killed at {delay:.2f} of {life:.2f} s)"
        _check(finished, tiny_run, outputs, what, complete=False)  # the whole result or nothing
        jobs.start(argv)
        assert jobs.wait() == 0, f"{what}: the rerun failed"
        _check(finished, tiny_run, outputs, what + ", rerun", complete=True)
    _nothing_else_changed(finished, tiny_run)
    print(f"{stage}: {TRIALS} kills, {hits} of a running job (life {life:.2f} s); all reruns identical")
    assert hits >= TRIALS // 2, f"only {hits} of {TRIALS} kills hit a running {stage} job"


def _job_process(parent: psutil.Process, words, timeout=120):
    """The job's python process, once Snakemake has started it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and parent.is_running():
        for child in parent.children(recursive=True):
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if "ghanet_pipeline" in cmd and all(w in cmd for w in words):
                return child
        time.sleep(0.01)
    raise AssertionError("the job never started")


# the job alone killed, as the OOM killer does, for extract; Snakemake and the job killed together
# the moment the first of train's five outputs appears, as when a node dies, for train
@pytest.mark.parametrize("stage,everything", [("extract", False), ("train", True)])
def test_killed_workflow_reruns_to_the_same_results(finished, tiny_run, stage, everything):
    outputs = OUTPUTS[stage]
    proc = subprocess.Popen(_snakemake(finished, "--forcerun", stage, "--", outputs[0]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tool_env())
    sm = psutil.Process(proc.pid)
    job = _job_process(sm, [stage])
    if everything:
        first = finished / outputs[0]
        while not first.exists() and job.is_running():
            time.sleep(0.002)
        victims = [sm, *sm.children(recursive=True)]
        what = f"{stage}: Snakemake and job killed when {outputs[0]} appeared"
    else:
        time.sleep(1.0)
        victims = [job]
        what = f"{stage}: job killed 1 s into its run"
    assert job.is_running(), f"{what}: the job had already finished"
    for v in victims:
        try:
            v.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(120)
    _check(finished, tiny_run, outputs, what, complete=False)
    if everything:  # a dead Snakemake leaves its lock, and its records say which outputs it never finished
        subprocess.run(_snakemake(finished, "--unlock"), capture_output=True, env=tool_env(), check=True)
        plain = subprocess.run(_snakemake(finished, "-n", "--", outputs[0]), capture_output=True, text=True,
                               env=tool_env())
        assert plain.returncode != 0 and "incomplete" in plain.stdout + plain.stderr, \
            f"{what}: Snakemake took the dead run's outputs as results"
    rerun = subprocess.run(_snakemake(finished, "--rerun-incomplete", "--", outputs[0]), capture_output=True,
                           text=True, env=tool_env())
    assert rerun.returncode == 0, f"{what}: the rerun failed\n{rerun.stderr[-3000:]}"
    assert f"rule {stage}:" in rerun.stdout + rerun.stderr, f"{what}: the rerun did not redo the job"
    _check(finished, tiny_run, outputs, what + ", rerun", complete=True)
    _nothing_else_changed(finished, tiny_run)
