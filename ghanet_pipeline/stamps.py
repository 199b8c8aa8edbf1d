"""Whether a slide's outputs of a stage are up to date, told by a stamp written beside them.

A job of several slides (`slides_per_job` > 1) reruns as a whole when Snakemake sees any of its
slides change; the stamp lets it redo only the slides whose inputs or settings changed, and
resume after a kill without redoing finished slides. Every slide command writes one, so a run
that switches to chunked jobs keeps the slides it already has.

Make's rule per slide: up to date when the stamp records the same arguments, every output exists,
and none is older than an input. Standard library only (the CLI reads it before any heavy import).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .io import write_json


def stamp_path(first_output: str | os.PathLike) -> Path:
    """The stamp beside the stage's first output, hidden: `<dir>/.<name>.stamp.json`."""
    p = Path(first_output)
    return p.with_name(f".{p.name}.stamp.json")


def digest(arguments: dict) -> str:
    """A hash of the arguments a slide's outputs depend on (paths, settings, resolution)."""
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()


def up_to_date(arguments: dict, inputs: list[str], outputs: list[str]) -> bool:
    try:
        stamp = json.loads(stamp_path(outputs[0]).read_text())
        out_times = [os.stat(p).st_mtime_ns for p in outputs]
        in_times = [os.stat(p).st_mtime_ns for p in inputs]
    except (OSError, ValueError):
        return False  # no stamp, a missing output, or a missing input (the stage says which)
    return stamp.get("digest") == digest(arguments) and min(out_times) >= max(in_times, default=0)


def clear_stamp(outputs: list[str]) -> None:
    stamp_path(outputs[0]).unlink(missing_ok=True)


def write_stamp(arguments: dict, outputs: list[str], extra: dict | None = None) -> None:
    """`extra`: what else the stamp says (a chunk job's mark and settings digest)."""
    write_json(stamp_path(outputs[0]), {"digest": digest(arguments), "outputs": [str(p) for p in outputs],
                                        **(extra or {})})
