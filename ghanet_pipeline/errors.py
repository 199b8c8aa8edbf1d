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
