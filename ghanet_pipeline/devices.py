"""Which device a job computes on: one GPU per job, held for the job's life, or the CPU.

Snakemake's `--resources gpu=N` only counts: N jobs that asked for a GPU run at once, but nothing
tells each which GPU is its own. So a job that asked for one claims a free device itself: it takes
an exclusive lock (flock) on a per-device file under a node-local folder, keeps it until it exits
(a killed job's lock goes with it), and narrows CUDA_VISIBLE_DEVICES to that device before CUDA
starts, so everything in the job sees that GPU alone as `cuda:0`.

The devices a job may claim are those CUDA_VISIBLE_DEVICES lists (a scheduler's allocation, or
the user's choice), else every GPU of the machine. Under SLURM the locks are per allocation, so
jobs of one grouped submission share out its GPUs and separate allocations never wait on each
other.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from .errors import GhanetError

log = logging.getLogger("ghanet.devices")
_HELD: list = []  # open lock files: a slot is held as long as the process lives
CUDA_BUILD_HINT = (
    "with --use-conda, build the deep-learning env on a machine with a GPU driver, or on a login node "
    "with CONDA_OVERRIDE_CUDA=12.6 so conda picks the CUDA build of PyTorch (remove the old env first: "
    "snakemake --conda-cleanup-envs); with pip, install the CUDA build of torch"
)


def lock_dir() -> Path:
    base = os.environ.get("GHANET_GPU_LOCK_DIR")
    if base:
        return Path(base)
    scope = os.environ.get("SLURM_JOB_ID", "local")
    return Path(tempfile.gettempdir()) / f"ghanet-gpus-{os.getuid()}-{scope}"


def visible_devices() -> list[str]:
    """The GPUs this job may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    # NVML-based count: does not start CUDA, so CUDA_VISIBLE_DEVICES can still be narrowed
    return [str(i) for i in range(torch.cuda.device_count())]


def claim(devices: list[str], poll_s: float = 0.5) -> str:
    """Lock one of `devices` for the rest of this process and return it; waits while all are held."""
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for dev in devices:
            fh = open(folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', dev)}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            _HELD.append(fh)
            return dev
        if not waited:
            log.info("all %d GPUs (%s) are held by other jobs; waiting for one (is --resources gpu "
                     "larger than the number of GPUs?)", len(devices), ",".join(devices))
            waited = True
        time.sleep(poll_s)


def _no_cuda_reason(torch) -> str:
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) is a CPU build, without CUDA"
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"CUDA_VISIBLE_DEVICES={listed!r} lists none usable" if listed is not None else "no GPU driver here"
    return f"this PyTorch has CUDA {torch.version.cuda} but sees no GPU ({where})"


def resolve(device: str, wants_gpu: bool, stage: str):
    """The torch device of a job: `device` is auto, cpu, cuda or cuda:<i> (the rule's `device`
    resource); `wants_gpu` says the rule asked the scheduler for a GPU (its `gpu` resource).

    auto: a claimed GPU when the rule asked for one and one can be had, else the CPU (with a
    warning line when a GPU was asked for). cuda: a claimed GPU, or an error saying how to get a
    CUDA build. cuda:<i>: that device, as the user pinned it.
    """
    import torch

    if device == "cpu":
        log.info("device: cpu (as asked)")
        return torch.device("cpu")
    if device not in ("auto", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise GhanetError(f"device {device!r} is not one of auto, cpu, cuda, cuda:<index>; "
                          f"set it with --set-resources {stage}:device=cuda")
    if device == "auto" and not wants_gpu:
        log.info("device: cpu (the rule asks for no GPU)")
        return torch.device("cpu")
    slot, devices = None, []
    if device in ("auto", "cuda"):
        devices = visible_devices()
        if devices:  # claimed before CUDA starts, which fixes the visible devices
            slot = claim(devices)
            os.environ["CUDA_VISIBLE_DEVICES"] = slot
    held = f"GPU slot: device {slot} of {','.join(devices)}, held until this job ends" if slot else ""
    if torch.cuda.is_available():
        dev = torch.device("cuda:0" if device == "auto" else device)
        log.info("device: %s (%s)%s", dev, torch.cuda.get_device_name(dev), f"; {held}" if held else "")
        return dev
    reason = _no_cuda_reason(torch)
    if device != "auto":
        raise GhanetError(f"device {device} asked for, but {reason}; {CUDA_BUILD_HINT}; "
                          f"or run on the CPU: --set-resources {stage}:device=cpu")
    # the job's first line, and the run summary's: a GPU job on the CPU takes many times longer
    print(f"ghanet {stage}: warning: the rule asked for a GPU and this job found none ({reason}); "
          "running on the CPU", file=sys.stderr, flush=True)
    log.info("device: cpu%s", f" ({held}, unused)" if held else "")
    return torch.device("cpu")
