"""A slide command (segment, tile, extract, export-pt): one slide (--slide, --slide-id), or several in
one process (--slides, what a `slides_per_job` chunk runs), each slide with its own stamp and log.
With --on-error skip (cohort.on_slide_error) a slide that cannot be used is recorded as failed in
its outputs, and the later stages pass the failure on.

Each stage declares its slide command with `command()`: its options, what one slide's work is, and
which options are the slide's input files and which its outputs (its stamp's make rule).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import stamps
from .commands import Command
from .errors import ChunkFailed, GhanetError, report_unexpected
from .io import atomic_path

log = logging.getLogger("ghanet")

# the options that change how a slide is run but not what it gives: never in its stamp
RUNTIME_ARGS = {"func", "command", "verbose", "on_error", "device", "gpus", "batch_size", "workers", "threads",
                "slide_reader", "reader", "slides", "slide_log", "done", "stamp_extra"}


def slides_args(p: argparse.ArgumentParser) -> None:
    """Several slides in one job (slides_per_job): the paths of the other options hold {slide}."""
    p.add_argument("--slides", default=None,
                   help="instead of one slide: a JSON list of {slide_id, path[, mpp, default_mpp]}; the "
                        "file options are patterns with {slide}")
    p.add_argument("--slide-log", default=None, help="with --slides: each slide's log, a pattern with {slide}")
    p.add_argument("--done", default=None, help="with --slides: the table of the job's slides, written last")
    p.add_argument("--stamp-extra", default=None,
                   help="JSON the slide's stamp also records (the workflow's provenance of outputs a chunk made)")


def slide_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slide", default=None, help="path to the whole-slide image")
    p.add_argument("--slide-id", default=None, help="the slide's id (names its outputs)")
    slides_args(p)
    p.add_argument("--mpp", type=float, default=None, help="level-0 microns per pixel (overrides the file)")
    p.add_argument("--default-mpp", type=float, default=None,
                   help="mpp for a file without metadata (cohort.default_mpp)")
    p.add_argument("--mpp-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="plausible level-0 um/px (cohort.mpp_range; default 0.1 10)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="a slide that cannot be used fails the command, or is recorded as failed (cohort.on_slide_error)")


def command(arguments: Callable, work: Callable, *, inputs: tuple = (), outputs: tuple = (),
            record: Callable | None = None, before_chunk: Callable | None = None) -> Command:
    """A stage's slide command. `work(args)`: one slide; `inputs`/`outputs`: the options naming its
    input and output files; `record(args, why)`: write its outputs as failed (--on-error skip);
    `before_chunk(args)`: once before the slides of --slides (extract claims its GPU there)."""
    return Command(arguments, _SlideStage(work, inputs, outputs, record, before_chunk).run)


@dataclass(frozen=True)
class _SlideStage:
    work: Callable
    inputs: tuple
    outputs: tuple
    record: Callable | None
    before_chunk: Callable | None

    def run(self, args) -> None:
        if args.slides is not None:
            self._run_slides(args)
            return
        if getattr(args, "slide_id", "") is None or getattr(args, "slide", "") is None:
            raise GhanetError("give --slide and --slide-id, or --slides")
        self._run_slide(args)

    def _stamp(self, args) -> tuple[list[str], list[str], dict]:
        """A slide's input files, its outputs, and the arguments its outputs depend on."""
        inputs = [getattr(args, a) for a in self.inputs if getattr(args, a)] + (
            [args.slide] if getattr(args, "slide", None) else [])
        outputs = [getattr(args, a) for a in self.outputs if getattr(args, a)]
        return inputs, outputs, {k: v for k, v in vars(args).items() if k not in RUNTIME_ARGS}

    def _run_slide(self, args, made_by: dict | None = None) -> None:
        """One slide's stage, then its stamp (which a job of several slides reads to skip it). The old
        stamp goes first: outputs rewritten by a job killed before its stamp are never vouched for.
        `made_by`: a chunk job's mark and the workflow's digest of the slide's settings, which
        Snakemake does not record for outputs a chunk makes (the workflow reads them back with a
        job per slide)."""
        _, outputs, kept = self._stamp(args)
        stamps.clear_stamp(outputs)
        self._work_or_record(args)
        stamps.write_stamp(kept, outputs, made_by or json.loads(getattr(args, "stamp_extra", None) or "{}"))

    def _work_or_record(self, args) -> None:
        """The slide's work. With --on-error skip a slide that cannot be used is recorded as failed in
        the stage's outputs, said in a warning line, and the command succeeds."""
        try:
            self.work(args)
        except GhanetError as exc:
            if self.record is None or args.on_error != "skip":
                raise
            self.record(args, str(exc))
            print(f"ghanet {args.command}: warning: slide {args.slide_id} skipped (cohort.on_slide_error: skip): {exc}",
                  file=sys.stderr)

    def _run_slides(self, args) -> None:
        """The slides of `--slides`, one after another in this process (the encoder loads once), each
        with its own log, skipped when up to date (a rerun after a kill or an edit redoes only what
        changed). A slide that fails does not stop the others; the job fails at the end, naming them."""
        try:
            entries = json.loads(args.slides)
        except json.JSONDecodeError as exc:
            raise GhanetError(f"--slides is not valid JSON ({exc})") from None
        if not args.slide_log or not args.done:
            raise GhanetError("--slides needs --slide-log and --done")
        if self.before_chunk:
            self.before_chunk(args)
        rows, failed = [], []
        for entry in entries:
            sid = entry["slide_id"]
            one = argparse.Namespace(**{**vars(args), "slides": None})
            for name in self.inputs + self.outputs:
                if getattr(one, name):
                    setattr(one, name, getattr(one, name).replace("{slide}", sid))
            for key, attr in (("slide_id", "slide_id"), ("path", "slide"), ("mpp", "mpp"), ("default_mpp", "default_mpp")):
                if key in entry and hasattr(one, attr):
                    setattr(one, attr, entry[key])
            log_path = args.slide_log.replace("{slide}", sid)
            inputs, outputs, kept = self._stamp(one)
            if stamps.up_to_date(kept, inputs, outputs):
                status = "up to date"  # its log stays as its last run wrote it
            else:
                with _logging_to(log_path) as fh:
                    try:
                        self._run_slide(one, {"made_by": "chunk", "settings": entry.get("settings")})
                        status = "done"
                    except GhanetError as exc:
                        status = f"failed: {exc}"
                        print(f"ghanet {args.command}: error: {exc}", file=fh)
                    except Exception as exc:  # noqa: BLE001 - a bug of ours: this slide's log says so, the rest go on
                        status = f"failed: {report_unexpected(args.command, exc, fh)}"
            if status.startswith("failed"):
                failed.append(sid)
            log.info("%s %s: %s (log: %s)", args.command, sid, status, log_path)
            rows.append(f"{sid}\t{status}")
        if failed:
            raise ChunkFailed(f"{len(failed)} of {len(entries)} slides failed: {', '.join(failed)}; each slide's "
                              f"log says why ({args.slide_log})")
        with atomic_path(args.done) as tmp:
            tmp.write_text("slide_id\tstatus\n" + "".join(r + "\n" for r in rows))


@contextlib.contextmanager
def _logging_to(path: str):
    """The slide's log: what the stage logs and prints while it runs (the job's log has it too)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            with contextlib.redirect_stderr(fh):
                yield fh
        finally:
            logging.getLogger().removeHandler(handler)
