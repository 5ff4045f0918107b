"""Which part of the image decides the label: occlusion sensitivity, saliency and Grad-CAM.

All three take one image ``x`` (C, H, W) (or (1, C, H, W)) and a ``target`` class, and return an (H, W)
map at the image's resolution.

- Occlusion (Zeiler & Fergus 2014): slide a grey patch over the image and record the probability of the
  target class; low where the occluded part mattered.  The occluded copies are batched.
- Saliency (Simonyan et al. 2014): ``|d score_target / d x|``, the largest over the channels.
- Grad-CAM (Selvaraju et al. 2017) for a conv layer with maps ``A_k`` (K, h, w):
  ``alpha_k = mean_ij d score / d A_k[i, j]``, ``cam = relu(sum_k alpha_k A_k)``, upsampled bilinearly.
"""
import numpy as np

from .. import functional as F
from ..core import Tensor, no_grad
from . import _plot
from .layers import get_layer


def _image(x):
    x = _plot.to_host(x).astype(np.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"viz: expected one image (C, H, W) or (1, C, H, W), got shape {x.shape}")
    return x


def _eval(model):
    was = model.training
    model.eval()
    return was


def occlusion(model, x, target, patch=8, stride=4, fill=0.0, batch_size=64):
    """Probability of ``target`` with a ``patch`` x ``patch`` square of value ``fill`` at each position.

    Returns ``(heat, grid)``: ``grid`` (OH, OW) the probability with the patch's top-left corner at
    ``(i * stride, j * stride)``, ``heat`` (H, W) each pixel's mean over the patches that cover it.
    """
    x = _image(x)
    c, h, w = x.shape
    if not (1 <= patch <= min(h, w)) or stride < 1:
        raise ValueError(f"occlusion: patch must be in 1..{min(h, w)} and stride >= 1, got {patch}, {stride}")
    tops = list(range(0, h - patch + 1, stride))
    lefts = list(range(0, w - patch + 1, stride))
    positions = [(t, lft) for t in tops for lft in lefts]
    probs = []
    was = _eval(model)
    try:
        with no_grad():
            for i in range(0, len(positions), batch_size):
                chunk = positions[i:i + batch_size]
                batch = np.repeat(x[None], len(chunk), axis=0)
                for b, (t, lft) in enumerate(chunk):
                    batch[b, :, t:t + patch, lft:lft + patch] = fill
                p = F.softmax(model(Tensor(batch)), dim=1)
                probs.append(_plot.to_host(p)[:, target])
    finally:
        model.train(was)
    grid = np.concatenate(probs).reshape(len(tops), len(lefts))
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for (t, lft), v in zip(positions, grid.ravel()):
        total[t:t + patch, lft:lft + patch] += v
        count[t:t + patch, lft:lft + patch] += 1
    heat = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return heat, grid


def _score(model, x, target):
    out = model(x)
    return out[:, target].sum()


def saliency(model, x, target):
    """``max_c |d logit_target / d x[c]|``, (H, W): the pixels whose change moves the score most."""
    x = Tensor(_image(x)[None], requires_grad=True)
    was = _eval(model)
    try:
        _score(model, x, target).backward()
    finally:
        model.train(was)
    return np.abs(_plot.to_host(x.grad)[0]).max(axis=0)


def _resize_bilinear(a, h, w):
    """(h0, w0) -> (h, w), bilinear with aligned pixel centres (as ``interpolate(align_corners=False)``)."""
    h0, w0 = a.shape
    ys = np.clip((np.arange(h) + 0.5) * h0 / h - 0.5, 0, h0 - 1)
    xs = np.clip((np.arange(w) + 0.5) * w0 / w - 0.5, 0, w0 - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h0 - 1), np.minimum(x0 + 1, w0 - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bottom = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def grad_cam(model, layer, x, target):
    """Grad-CAM of ``layer`` (a conv layer or any layer with (1, K, h, w) output) for ``target``: (H, W), >= 0."""
    name, module = get_layer(model, layer)
    x = _image(x)
    kept = {}

    def hook(mod, args, out):
        out.retain_grad()
        kept["A"] = out

    handle = module.register_forward_hook(hook)
    was = _eval(model)
    try:
        _score(model, Tensor(x[None], requires_grad=True), target).backward()
    finally:
        handle.remove()
        model.train(was)
    if "A" not in kept or kept["A"].ndim != 4:
        raise ValueError(f"grad_cam: layer {name!r} must produce (N, K, h, w) maps in the forward pass")
    a, g = _plot.to_host(kept["A"])[0], _plot.to_host(kept["A"].grad)[0]
    alpha = g.mean(axis=(1, 2))                       # alpha_k = mean_ij dScore/dA_k[i, j]
    cam = np.maximum((alpha[:, None, None] * a).sum(axis=0), 0)
    return _resize_bilinear(cam, x.shape[1], x.shape[2])


def plot_heatmaps(image, maps, path, titles=None, title=None):
    """The image, then each (H, W) map over it (semi-transparent), side by side."""
    img, cmap = _plot.image_for_display(_plot.to_host(image))
    fig = _plot.figure((2.4 * (len(maps) + 1), 2.6))
    axes = _plot.grid_axes(fig, len(maps) + 1, len(maps) + 1)
    axes[0].imshow(img, cmap=cmap)
    axes[0].set_title("image", fontsize=9)
    for ax, m, t in zip(axes[1:], maps, titles or [None] * len(maps)):
        ax.imshow(img, cmap=cmap)
        im = ax.imshow(m, cmap="jet", alpha=0.55)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        if t:
            ax.set_title(t, fontsize=9)
    if title:
        fig.suptitle(title)
    return _plot.save(fig, path)
