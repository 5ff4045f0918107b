"""The per-epoch history of ``fit``: one line per epoch for the log, JSON and CSV files, the curves as a PNG."""
import csv
import io
import json
import os

from .. import checkpoint


def write_history(path, history):
    """Write the per-epoch records to ``<path>.json`` and ``<path>.csv`` (``path`` with or without suffix)."""
    stem = os.fspath(path)
    stem = stem[:-5] if stem.endswith(".json") else stem[:-4] if stem.endswith(".csv") else stem
    checkpoint.atomic_write(stem + ".json", lambda f: f.write(json.dumps(history, indent=1).encode()))
    if not history:
        return
    columns = list(history[0])

    def write_csv(f):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        f.write(text.getvalue().encode())
    checkpoint.atomic_write(stem + ".csv", write_csv)


def format_record(r, epochs):
    """One human-readable line for an epoch record."""
    return (f"epoch {r['epoch']}/{epochs}  lr {r['lr']:.4g}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:.2%}  |  test loss {r['test_loss']:.4f} top-1 {r['test_acc1']:.2%} "
            f"top-5 {r['test_acc5']:.2%}  |  {r['images_per_s']:.0f} img/s, {r['epoch_time_s']:.1f} s")


def plot_history(history, path, title=None):
    """Save the training curves as a PNG: loss (train and test) and accuracy (train, test top-1 and top-5).

    Uses Matplotlib's Agg canvas directly (no pyplot, no global backend change); needs ``matplotlib``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss_ax.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    for key, label, style in (("train_acc", "train", "o-"), ("test_acc1", "test top-1", "s-"),
                              ("test_acc5", "test top-5", "^--")):
        acc_ax.plot(epochs, [100 * r[key] for r in history], style, label=label)
    acc_ax.set(xlabel="epoch", ylabel="accuracy, %", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
