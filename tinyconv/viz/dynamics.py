"""Training dynamics: per-layer statistics of weights, gradients and activations over the iterations.

In the spirit of Chainer's ``VariableStatisticsPlot``: a :class:`StatsRecorder` samples, every ``every``
steps, the percentiles (and mean, std, norm, fraction of zeros) of each layer's weight, its gradient and
its output, and ``plot`` draws them as bands over the iterations.  Use it with ``fit`` or your own loop::

    rec = viz.StatsRecorder(model, every=10)
    with rec:                                        # adds forward hooks; removed on exit
        fit(..., on_step_end=rec.on_step_end)        # or: call rec.step() after each optimiser step
    rec.plot("runs/dynamics.png")

Cheap when off: without the ``with`` block nothing is hooked; inside it the activation hooks compute only
on the sampled steps (and only in training mode, so evaluation passes are not counted).
"""
import numpy as np

from .. import nn
from . import _plot

PERCENTILES = (0, 2.28, 15.87, 50, 84.13, 97.72, 100)  # Chainer's: min, -2 sigma, -1 sigma, median, ...
LAYER_TYPES = (nn.Conv2d, nn.Linear)


def stats(a):
    """Summary of an array: percentiles (``PERCENTILES``), mean, std, L2 norm, fraction of exact zeros."""
    a = _plot.to_host(a).ravel()
    return {"percentiles": np.percentile(a, PERCENTILES), "mean": float(a.mean()), "std": float(a.std()),
            "norm": float(np.sqrt((a * a).sum())), "zeros": float((a == 0).mean())}


class StatsRecorder:
    """Records per-layer statistics during training; see the module docstring.

    ``layers``: names or modules to watch (default: every ``Conv2d`` and ``Linear``); ``activations``:
    whether to hook their outputs too.  ``records`` is a list of ``{"step", "layer", "kind", **stats}``
    with ``kind`` one of ``"weight"``, ``"grad"``, ``"activation"``.
    """

    def __init__(self, model, every=1, layers=None, activations=True):
        if every < 1:
            raise ValueError(f"StatsRecorder: every must be >= 1, got {every}")
        self.model, self.every, self.watch_activations = model, int(every), activations
        if layers is None:
            self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
        else:
            from .layers import get_layer
            self.layers = [get_layer(model, lay) for lay in layers]
        self.records, self.steps = [], 0
        self._handles, self._pending = [], {}

    def __enter__(self):
        if self.watch_activations:
            for name, m in self.layers:
                self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def _due(self):
        return self.steps % self.every == 0  # the step about to run (0-based) is sampled

    def _hook(self, name):
        def hook(module, args, out):
            if module.training and self._due():
                self._pending[name] = stats(out)
        return hook

    def step(self):
        """Call after each optimiser step (gradients still in ``.grad``): records the sampled steps."""
        if self._due():
            for name, m in self.layers:
                w = getattr(m, "weight", None)
                if w is None:
                    continue
                self.records.append({"step": self.steps, "layer": name, "kind": "weight", **stats(w)})
                if w.grad is not None:
                    self.records.append({"step": self.steps, "layer": name, "kind": "grad", **stats(w.grad)})
                if name in self._pending:
                    self.records.append({"step": self.steps, "layer": name, "kind": "activation",
                                         **self._pending.pop(name)})
        self._pending.clear()
        self.steps += 1

    def on_step_end(self, epoch, step, loss):
        """``fit``'s ``on_step_end`` callback: the same as :meth:`step`."""
        self.step()

    def series(self, layer, kind, key="percentiles"):
        """``(steps, values)`` of one statistic of one layer."""
        rows = [r for r in self.records if r["layer"] == layer and r["kind"] == kind]
        return np.array([r["step"] for r in rows]), np.array([r[key] for r in rows])

    def plot(self, path, kinds=("weight", "grad", "activation"), title=None):
        """A grid: one row per watched layer, one column per kind; percentile bands over the steps."""
        kinds = [k for k in kinds if any(r["kind"] == k for r in self.records)]
        if not kinds:
            raise ValueError("StatsRecorder.plot: nothing recorded yet (call step() after optimiser steps)")
        layers = [n for n, _ in self.layers]
        fig = _plot.figure((3.6 * len(kinds), 1.7 * len(layers) + 0.8))
        axes = fig.subplots(len(layers), len(kinds), squeeze=False, sharex=True)
        for i, layer in enumerate(layers):
            for j, kind in enumerate(kinds):
                ax = axes[i, j]
                steps, p = self.series(layer, kind)
                if len(steps):
                    for lo, alpha in ((0, 0.15), (1, 0.25), (2, 0.4)):  # min-max, 2 and 1 sigma bands
                        ax.fill_between(steps, p[:, lo], p[:, -1 - lo], color="C0", alpha=alpha, lw=0)
                    ax.plot(steps, p[:, 3], color="C0", lw=1)
                ax.tick_params(labelsize=7)
                if i == 0:
                    ax.set_title(kind, fontsize=9)
                if j == 0:
                    ax.set_ylabel(layer, fontsize=8)
                if i == len(layers) - 1:
                    ax.set_xlabel("step", fontsize=8)
        fig.suptitle(title or "per-layer statistics (median; 1, 2 sigma and min-max bands)", fontsize=10)
        return _plot.save(fig, path)
