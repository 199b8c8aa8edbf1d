"""What every figure of the pipeline shares: a headless backend and an atomic image write."""

from __future__ import annotations

from .io import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 100) -> None:
    """Write `fig` under a temporary name, rename it into place, and close it. PNG, or JPEG
    (quality 90) for a path ending .jpg: photographs of tissue, where PNG would be ten times larger."""
    from pathlib import Path

    plt = pyplot()
    jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="jpeg" if jpeg else "png", dpi=dpi,
                    **({"pil_kwargs": {"quality": 90}} if jpeg else {}))
    plt.close(fig)


