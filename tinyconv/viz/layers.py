"""What a layer has learnt and what it responds to: filters, activation maps, top-k images and patches.

Layers are named as in ``model.named_modules()`` (``"features.0"``) or passed as modules.  Activations are
read with forward hooks (``Module.register_forward_hook``), under ``no_grad``, in evaluation mode.
"""
import numpy as np

from .. import nn
from ..core import Tensor, no_grad
from . import _plot


def get_layer(model, layer):
    """``layer`` (a name from ``named_modules()`` or a module of ``model``) as ``(name, module)``."""
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except (AttributeError, KeyError, IndexError):
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(f"viz: {type(model).__name__} has no layer {layer!r}; its layers: "
                             f"{', '.join(names[:40])}{' ...' if len(names) > 40 else ''}") from None
    for name, m in model.named_modules():
        if m is layer:
            return name, m
    raise ValueError(f"viz: {type(layer).__name__} is not a layer of {type(model).__name__}")


def activations(model, layers, x, batch_size=256):
    """The outputs of ``layers`` (a name, a module, or a list of them) for input ``x`` (N, C, H, W).

    Returns ``{name: ndarray}`` (one array when ``layers`` is a single layer), computed in batches in
    evaluation mode under ``no_grad`` (the model's training mode is restored).
    """
    single = not isinstance(layers, (list, tuple))
    named = [get_layer(model, lay) for lay in ([layers] if single else layers)]
    store = {name: [] for name, _ in named}
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: store[name].append(_plot.to_host(out)))
               for name, m in named]
    was_training = model.training
    model.eval()
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))
    try:
        with no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {name: np.concatenate(parts) for name, parts in store.items()}
    return out[named[0][0]] if single else out


def plot_filters(weight, path, title=None, max_filters=64, max_inputs=16):
    """The filters of a convolution (its module or weight (K, C, KH, KW)) as small images.

    With 3 input channels each filter is one RGB image; with 1, one grey image; deeper layers show one
    grey image per (filter, input channel) pair: a row per filter (at most ``max_filters`` rows and
    ``max_inputs`` columns).  Each filter is scaled on its own, with its value range in grey = 0.5 at zero.
    """
    w = _plot.to_host(getattr(weight, "weight", weight))
    if w.ndim != 4:
        raise ValueError(f"plot_filters: expected a (K, C, KH, KW) weight, got shape {w.shape}")
    k, c = min(w.shape[0], max_filters), w.shape[1]

    def sym(a):  # zero in the middle grey, so the sign of a weight reads at a glance
        m = float(np.abs(a).max()) or 1.0
        return 0.5 + 0.5 * a / m

    if c in (1, 3):
        cols = k if k <= 8 else int(np.ceil(np.sqrt(k)))  # a few filters: one row
        rows = int(np.ceil(k / cols))
        fig = _plot.figure((min(14, 1.3 * cols + 0.5), 1.3 * rows + 0.7))
        for i, ax in enumerate(_plot.grid_axes(fig, k, cols)):
            img = sym(w[i])
            ax.imshow(img.transpose(1, 2, 0) if c == 3 else img[0], cmap=None if c == 3 else "gray",
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(str(i), fontsize=8)
    else:
        cols = min(c, max_inputs)
        fig = _plot.figure((0.6 * cols + 1, 0.6 * k + 1))
        axes = _plot.grid_axes(fig, k * cols, cols)
        for i in range(k):
            for j in range(cols):
                ax = axes[i * cols + j]
                ax.imshow(sym(w[i])[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                if j == 0:
                    ax.set_ylabel(str(i), fontsize=7, rotation=0, labelpad=8)
                if i == 0:
                    ax.set_title(f"in {j}", fontsize=7)
    fig.suptitle(title or f"{w.shape[0]} filters {w.shape[2]}x{w.shape[3]}, {c} input channel(s)")
    return _plot.save(fig, path)


def plot_activations(maps, path, title=None, max_maps=64, image=None):
    """The maps (C, H, W) of one image's activation, each with its own colour scale (zero is black).

    ``image`` (optional, (C, H, W) or (H, W)) is drawn first for reference.  The title states the fraction
    of exactly-zero units (the sparsity of ReLU layers).
    """
    maps = _plot.to_host(maps)
    if maps.ndim == 1:
        maps = maps[:, None, None]
    n = min(len(maps), max_maps)
    extra = image is not None
    fig = _plot.figure((min(14, 1.3 * np.ceil(np.sqrt(n + extra)) + 1),) * 2)
    axes = _plot.grid_axes(fig, n + extra)
    if extra:
        img, cmap = _plot.image_for_display(_plot.to_host(image))
        axes[0].imshow(img, cmap=cmap)
        axes[0].set_title("input", fontsize=8)
    for i in range(n):
        axes[i + extra].imshow(maps[i], cmap="viridis", interpolation="nearest")
        axes[i + extra].set_title(str(i), fontsize=8)
    zeros = float((maps == 0).mean())
    fig.suptitle((title or f"{len(maps)} activation maps") + f"  (zero: {zeros:.0%})")
    return _plot.save(fig, path)


_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)


def receptive_field(model, layer, input_shape):
    """The receptive field of one unit of ``layer``, computed from the stack of layers below it.

    The convolutions and poolings that run before ``layer`` (in the order a forward pass of an
    ``input_shape`` batch calls them; everything else is taken as pointwise) compose as
    ``size += (k - 1) * dilation * jump``, ``start -= padding * jump``, ``jump *= stride``.  Returns
    ``(size, jump, start)``, each an (H, W) pair: unit ``(i, j)`` sees input rows
    ``start[0] + i * jump[0]`` to ``+ size[0]`` (clipped to the image), and columns alike.  Exact for
    chains of layers (LeNet, AlexNet, VGG); an estimate where branches differ.
    """
    name, target = get_layer(model, layer)
    order = []
    handles = [m.register_forward_hook(lambda mod, a, o: order.append(mod))
               for _, m in model.named_modules() if isinstance(m, _SPATIAL) or m is target]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.zeros((1,) + tuple(input_shape[-3:]), dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if target not in order:
        raise ValueError(f"receptive_field: layer {name!r} did not run in a forward pass")
    size, jump, start = np.ones(2, int), np.ones(2, int), np.zeros(2, int)
    for m in order[:order.index(target) + 1]:
        if not isinstance(m, _SPATIAL):
            continue
        k, s = _pair(m.kernel_size), _pair(m.stride)
        p = _pair(m.padding) if not isinstance(m.padding, str) else ((0, 0) if m.padding == "valid" else
                                                                    tuple((kk - 1) // 2 for kk in k))
        d = _pair(getattr(m, "dilation", 1))
        size = size + (np.array(k) - 1) * np.array(d) * jump
        start = start - np.array(p) * jump
        jump = jump * np.array(s)
    return tuple(size.tolist()), tuple(jump.tolist()), tuple(start.tolist())


def top_k(model, layer, images, channel, k=9, batch_size=256):
    """The ``k`` images of ``images`` (N, C, H, W) that excite ``channel`` of ``layer`` most.

    A unit's response is its activation; an image's score is its strongest unit in that channel (the
    channel's maximum over positions; the value itself for a fully connected layer).  Returns a dict:
    ``index`` (k,), ``score`` (k,), ``position`` (k, 2) of the strongest unit, and for convolutional
    layers ``patch`` ((k, 4): top, left, bottom, right in input pixels, from :func:`receptive_field`).
    """
    images = _plot.to_host(images).astype(np.float32)
    acts = activations(model, layer, images, batch_size)
    if channel >= acts.shape[1]:
        raise ValueError(f"top_k: layer {layer!r} has {acts.shape[1]} channels, asked for channel {channel}")
    a = acts[:, channel].reshape(len(acts), -1)
    best = a.argmax(axis=1)
    scores = a[np.arange(len(a)), best]
    index = np.argsort(-scores, kind="stable")[:k]
    result = {"index": index, "score": scores[index]}
    if acts.ndim == 4:
        ow = acts.shape[3]
        pos = np.stack([best[index] // ow, best[index] % ow], axis=1)
        size, jump, start = receptive_field(model, layer, images.shape[1:])
        h, w = images.shape[2:]
        top = np.clip(start[0] + pos[:, 0] * jump[0], 0, h)
        left = np.clip(start[1] + pos[:, 1] * jump[1], 0, w)
        bottom = np.clip(start[0] + pos[:, 0] * jump[0] + size[0], 0, h)
        right = np.clip(start[1] + pos[:, 1] * jump[1] + size[1], 0, w)
        result.update(position=pos, patch=np.stack([top, left, bottom, right], axis=1))
    return result


def plot_top_k(images, result, path, title=None):
    """The top-k images of :func:`top_k` in a row, their receptive-field patches (boxed, and cut out) below."""
    images = _plot.to_host(images)
    k = len(result["index"])
    patches = "patch" in result
    fig = _plot.figure((1.3 * k + 0.5, 2.8 if patches else 1.6))
    axes = np.atleast_2d(fig.subplots(2 if patches else 1, k, squeeze=False))
    for i, idx in enumerate(result["index"]):
        img, cmap = _plot.image_for_display(images[idx])
        ax = axes[0, i]
        ax.imshow(img, cmap=cmap)
        ax.set_title(f"#{idx}\n{result['score'][i]:.2f}", fontsize=7)
        if patches:
            t, lft, b, r = result["patch"][i]
            from matplotlib.patches import Rectangle
            ax.add_patch(Rectangle((lft - 0.5, t - 0.5), r - lft, b - t, fill=False, edgecolor="red", lw=1.2))
            axes[1, i].imshow(img[t:b, lft:r], cmap=cmap)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "images that excite the channel most")
    return _plot.save(fig, path)
