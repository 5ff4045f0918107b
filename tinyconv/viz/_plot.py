"""Matplotlib helpers shared by the viz modules: a Figure on the Agg canvas (no pyplot, no global backend
change), an atomic PNG save, and image grids."""
import numpy as np

from ..checkpoint import atomic_write


def figure(figsize):
    """A Matplotlib ``Figure`` drawn by the Agg canvas; raises a clear error without Matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("tinyconv.viz needs matplotlib: pip install 'tinyconv[viz]'") from None
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path, dpi=100):
    """Write ``fig`` to ``path`` (PNG unless the name says otherwise) atomically; returns ``path``."""
    fmt = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    return path


def to_host(x):
    """A Tensor or array as a NumPy float array."""
    from .. import backend
    data = getattr(x, "data", x)
    return np.asarray(backend.to_numpy(data) if backend.is_array(data) else data, dtype=np.float64)


def scale01(a):
    """``a`` linearly mapped to [0, 1] (a constant array becomes 0.5)."""
    lo, hi = float(a.min()), float(a.max())
    return np.full_like(a, 0.5) if hi <= lo else (a - lo) / (hi - lo)


def image_for_display(img):
    """(C, H, W) or (H, W) -> (H, W) grey or (H, W, 3) RGB in [0, 1], and the colour map to use."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] == 3:
        return scale01(img.transpose(1, 2, 0)), None
    if img.ndim == 3:
        img = img.mean(axis=0)
    return scale01(img), "gray"


def grid_axes(fig, n, cols=None):
    """``n`` axes in a grid (``cols`` wide, about square otherwise), ticks off; extra axes hidden."""
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]
