"""What the stages' commands share: how a command is declared (its arguments and its run, in its
stage's module), the options several commands take, and reading a command's config sections.

Light on purpose: `ghanet` imports this before it knows which stage runs; the schema check
(jsonschema) is imported only by a command that reads a config.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Callable

from .errors import GhanetError


@dataclass(frozen=True)
class Command:
    """A `ghanet` subcommand: `arguments(parser)` adds its options, `run(args)` does its work."""
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


def stage_args(p: argparse.ArgumentParser) -> None:
    """--params (what the workflow passes) or --config: where the command reads its config."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--params", help="the stage's config section as JSON (what the workflow passes)")
    g.add_argument("--config", help="a config.yaml to take the stage's section from")


def device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (a free GPU if the job has one, else the CPU), cpu, cuda (a free GPU, or an "
                   "error), cuda:<i> (that one)")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs the job asked the scheduler for (the rule's gpu resource); with 0, auto is the CPU")


def sections(args) -> dict:
    """The whole validated config, from --params JSON of {section: {...}} or --config FILE; for
    stages that read several sections (missing ones take their defaults)."""
    from .config import load_config, validate_config

    if args.params is not None:
        return validate_config(_params(args), what="--params")
    return load_config(args.config) if args.config else validate_config({})


def section(args, name: str) -> dict:
    """The validated config section `name` from --params JSON or --config FILE (defaults filled)."""
    from .config import load_config, validate_config

    if args.params is not None:
        return validate_config({name: _params(args)}, what="--params")[name]
    return (load_config(args.config) if args.config else validate_config({}))[name]


def _params(args):
    try:
        return json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise GhanetError(f"--params is not valid JSON ({exc})") from None
