"""One GPU per job: jobs claim a free device slot and hold it for their life; a GPU job that finds
no GPU says so; `device: cuda` without CUDA fails with one line saying how to get a CUDA build.

No GPU is needed: the slots are the devices CUDA_VISIBLE_DEVICES lists, claimed with real locks by
real processes (and, below, by the real extract jobs of a Snakemake run with --resources gpu=2)."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest
import torch

from conftest import REPO, TINY_DEMO, bad_input, names_item_and_fix, snakemake, tool_env, write_config
from ghanet_pipeline import devices
from ghanet_pipeline.errors import GhanetError

CLAIMER = textwrap.dedent("""
    import sys, time
    from ghanet_pipeline import devices
    t0 = time.time()
    dev = devices.claim(sys.argv[1].split(","), poll_s=0.05)
    print(dev, t0, time.time(), flush=True)
    time.sleep(float(sys.argv[2]))
    print(time.time(), flush=True)
""")


def _claimers(n, devices_, hold_s, env_extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_extra)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, devices_, str(hold_s)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(n)]
    out = []
    for p in procs:
        lines = p.communicate(timeout=60)[0].split()
        out.append({"device": lines[0], "asked": float(lines[1]), "got": float(lines[2]), "left": float(lines[3])})
    return out


def test_each_process_holds_its_own_device_until_it_exits(tmp_path):
    jobs = sorted(_claimers(3, "0,1", 1.5, {"GHANET_GPU_LOCK_DIR": str(tmp_path)}), key=lambda j: j["got"])
    first, second, third = jobs
    assert {first["device"], second["device"]} == {"0", "1"}  # two free devices, two at once
    # the third waited until one of them was given back, and took that one (which of the two goes
    # first is the kernel's call: each says it leaves a moment before its exit frees the lock)
    freed = first if first["device"] == third["device"] else second
    assert third["got"] >= freed["left"] - 0.01 and third["device"] == freed["device"]
    assert third["got"] - third["asked"] > 1.0


def test_separate_slurm_allocations_do_not_wait_for_each_other(tmp_path, monkeypatch):
    # each allocation sees its own GPU as device 0; locks are scoped per allocation
    monkeypatch.delenv("GHANET_GPU_LOCK_DIR", raising=False)
    monkeypatch.setattr(devices.tempfile, "gettempdir", lambda: str(tmp_path))
    a = _claimers(1, "0", 0.0, {"SLURM_JOB_ID": "101", "TMPDIR": str(tmp_path)})
    b = _claimers(1, "0", 0.0, {"SLURM_JOB_ID": "102", "TMPDIR": str(tmp_path)})
    assert a[0]["device"] == b[0]["device"] == "0"
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert devices.lock_dir().name.endswith("-7")


@bad_input("device cuda asked for without CUDA")
def test_device_cuda_without_cuda_is_one_line_saying_how_to_get_a_cuda_build():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(GhanetError) as err:
        devices.resolve("cuda", True, "extract")
    names_item_and_fix(str(err.value), "device cuda", "CONDA_OVERRIDE_CUDA")
    with pytest.raises(GhanetError, match="not one of auto, cpu, cuda"):
        devices.resolve("gpu0", True, "train")


def test_a_gpu_job_without_a_gpu_says_so_on_its_first_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    probe = ("import logging, sys; logging.basicConfig(stream=sys.stderr, format='%(name)s %(message)s', "
             "level=logging.INFO); from ghanet_pipeline import devices; "
             "print(devices.resolve(sys.argv[1], sys.argv[2] == '1', 'extract'))")
    env = dict(tool_env(), PYTHONPATH=str(REPO))
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def run(device, wants):
        proc = subprocess.run([sys.executable, "-c", probe, device, wants], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip(), proc.stderr.splitlines()

    dev, err = run("auto", "1")
    assert dev == "cpu" and err[0].startswith("ghanet extract: warning: the rule asked for a GPU")
    dev, err = run("auto", "0")  # the SNN asks for no GPU: the CPU, without a warning
    assert dev == "cpu" and not any("warning" in line for line in err)


@pytest.mark.slow
def test_gpu_jobs_of_a_run_hold_distinct_devices(tiny_run, tmp_path):
    """The extract jobs of the tiny demo rerun with two GPU slots and four cores: at most two
    run at once, and no two running at once hold the same device. The run summary says they
    found no GPU (this PyTorch sees none: the slots are claimed all the same)."""
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    env = tool_env({"CUDA_VISIBLE_DEVICES": "0,1", "GHANET_GPU_LOCK_DIR": str(tmp_path / "locks")})
    proc = snakemake(work, "--resources", "gpu=2", "-R", "extract", "--until", "extract",
                     "--set-threads", "extract=1", configfile=write_config(work / "config.yaml", TINY_DEMO),
                     cores="4", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    held = []
    for log in sorted((work / "results/logs/extract").glob("*.log")):
        lines = log.read_text().splitlines()
        slot = [line for line in lines if "GPU slot: device" in line]
        assert slot, f"{log.name} names no device:\n" + "\n".join(lines)
        stamp = lambda line: datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: E731
        timed = [line for line in lines if line[:4].isdigit()]
        held.append((stamp(slot[0]), stamp(timed[-1]), slot[0].split("GPU slot: device ")[1].split()[0]))
    assert len(held) == 11 and {d for *_, d in held} == {"0", "1"}  # 7 cohort slides, 1 new patient, 3 held out
    for i, (s1, e1, d1) in enumerate(held):
        overlapping = [d2 for j, (s2, e2, d2) in enumerate(held) if j != i and s2 < e1 and s1 < e2]
        assert d1 not in overlapping and len(overlapping) <= 1, held
    summary = re.findall(r"^warning: extract \((\d+) jobs?: .*the rule asked for a GPU and this job found none",
                         proc.stdout + proc.stderr, re.M)
    assert sum(map(int, summary)) == 11
