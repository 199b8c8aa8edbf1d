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
