"""One exception type for everything a user can fix.

The CLI prints it as a single line (`ghanet <stage>: error: <message>`) and exits 1, so a failed
Snakemake job's log ends with exactly what went wrong and how to fix it.
"""


class GhanetError(Exception):
    """A problem with the user's input or configuration; the message names the item and the fix."""


class ConfigError(GhanetError):
    """The configuration does not match the schema."""


class SlideError(GhanetError):
    """A slide cannot be used; the message names the slide and the file."""


class ChunkFailed(GhanetError):
    """Some slides of a job of several failed; each slide's own log names why."""


def missing_module(exc: BaseException) -> str | None:
    """The one-line reason for a job whose Python lacks a dependency, or None for anything else.

    A job runs the `python` it finds on PATH: Snakemake started from a virtual environment that
    was not activated (or a conda env without --use-conda) gives jobs another interpreter. That is
    the job's environment, not a bug of ours, so the line names the module, the interpreter and the fix.
    """
    import sys

    name = getattr(exc, "name", None)
    if not isinstance(exc, ImportError) or not name or name.split(".")[0] == "ghanet_pipeline":
        return None
    return (f"the job's Python ({sys.executable}) has no module '{name.split('.')[0]}': it is not the environment "
            "ghanet-pipeline is installed in; activate that environment before running snakemake "
            "(. .venv/bin/activate), or run with --use-conda")


def report_unexpected(command: str, exc: Exception, out) -> str:
    """An exception that is no GhanetError, written to `out` ending with one line; returns that line's
    reason. A dependency missing from the job's Python is the environment's fault and is said so,
    without a traceback; anything else is a bug of ours, with the traceback for a report."""
    import traceback

    why = missing_module(exc)
    if why is None:
        traceback.print_exception(exc, file=out)
        why = f"internal error ({type(exc).__name__}: {exc})"
        print(f"ghanet {command}: error: {why}; this is a bug in ghanet-pipeline, please report it with this log",
              file=out)
    else:
        print(f"ghanet {command}: error: {why}", file=out)
    return why
