"""What every figure of the pipeline shares: a headless backend and an atomic image write."""

from __future__ import annotations

from .io import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel_grid(n: int, panel_in: tuple[float, float]):
    """(figure, the first n axes) for one panel per model, four a row: ten side by side would be 52
    inches wide; the grid's unused axes are hidden."""
    plt = pyplot()
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_in[0] * cols, panel_in[1] * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


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


