"""`ghanet`: one subcommand per stage. The CLI only dispatches: each command's options and its
work live in its stage's module (`COMMANDS` there, see `commands.Command`), and a run imports that
module alone, so a job pays for what its stage uses. Errors a user can fix print as one line and
exit 1."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import ChunkFailed, GhanetError, report_unexpected

# command: (the module that owns it, one line of help); the modules are imported only when called
COMMANDS = {
    "demo-cohort": ("demo", "write the synthetic demo cohort (slides, clinical, signatures)"),
    "demo-new-patients": ("demo", "write the demo's new patients (slides and slide sheet only)"),
    "demo-validation": ("demo", "write the demo's held-out labelled cohort (slides, sheet, outcomes)"),
    "segment": ("segment", "tissue contours (GeoJSON), QC PNG and stats of one slide"),
    "tile": ("tile", "tile coordinates (HDF5) and grid QC PNG of one slide"),
    "extract": ("extract", "patch features (HDF5 `features` + `coords`) of one slide"),
    "export-pt": ("extract", "a feature file as the MCAT/G-HANet .pt tensor (pt_files/<slide>.pt)"),
    "splits": ("splits", "validated cohort table, exclusions and patient-level folds"),
    "genes": ("genes", "per-fold differential selection of each gene family's features"),
    "train": ("train", "train one model on one fold; checkpoint, risks, log, loss curve"),
    "evaluate": ("evaluate", "out-of-fold C-index, time-dependent AUC, KM curves per model"),
    "predict": ("predict", "risk per patient from slides only, with every fold's model"),
    "validation-score": ("predict", "score an external validation cohort with every fold of one model"),
    "validate": ("validate", "evaluate the validation cohort's risks: C-index, td-AUC, KM, HR, calibration"),
    "heatmaps": ("heatmap", "attention heatmaps of one fold's held-out patients"),
    "feature-manifest": ("features", "one table of a cohort's feature files, checked to agree"),
    "slide-report": ("report", "cohort QC table: tissue, pieces and tiles per slide"),
    "init": ("init", "write a slide sheet from a folder of slides, and a config naming it"),
    "encoders": ("encoders", "list the encoders and whether their weights are in the local cache"),
    "check-config": ("check", "validate a config.yaml (and its slide sheet)"),
}


def command(name: str):
    """The `commands.Command` of `name`, from its stage's module (imported now)."""
    module = importlib.import_module(f".{COMMANDS[name][0]}", __package__)
    return module.COMMANDS[name]


def build_parser(called: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand by name and help; the options of `called` alone (its module is imported)."""
    parser = argparse.ArgumentParser(
        prog="ghanet", description="ghanet-pipeline: whole-slide images to per-patient risk scores. "
        "One subcommand per workflow stage.")
    parser.add_argument("--version", action="version", version=f"ghanet-pipeline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, (_, help_line) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line)
        if name == called:
            command(name).arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    called = next((a for a in argv if not a.startswith("-")), None)
    called = called if called in COMMANDS else None
    try:
        parser = build_parser(called)  # imports the called stage's module
    except Exception as exc:  # noqa: BLE001 - the job's Python lacks a dependency (said so), or a bug of ours
        report_unexpected(called or "", exc, sys.stderr)
        return 1
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        command(args.command).run(args)
    except ChunkFailed as exc:  # each failed slide's log holds its error line; this one only counts them
        print(f"ghanet {args.command}: {exc}", file=sys.stderr)
        return 1
    except GhanetError as exc:
        print(f"ghanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug of ours: the traceback for a report, one line last
        report_unexpected(args.command, exc, sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
