"""Atomic output: every file is written under a temporary name and renamed into place.

A job killed half-way leaves only `.<name>.tmp-<pid>` files, which no later step mistakes for a
result (Snakemake also removes the outputs of failed jobs, but not of a SIGKILLed process); the
next successful write of that output removes them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success rename it to `final`, else delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        # fsync so a crash after the rename cannot expose an empty file
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        # leftovers of writers killed before their rename (one job owns an output at a time)
        for stale in final.parent.glob(f".{glob.escape(final.name)}.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    # numpy scalars and arrays, without importing numpy (this module also serves the Snakefile)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
