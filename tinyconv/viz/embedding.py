"""A layer's features over a data set, mapped to the plane with t-SNE (van der Maaten & Hinton 2008).

``tsne`` uses scikit-learn's ``TSNE`` (the optional extra ``viz``: ``pip install 'tinyconv[viz]'``).
``knn_accuracy`` measures what the picture shows: how often a point's nearest neighbours share its class.
"""
import numpy as np

from . import _plot
from .layers import activations


def features(model, layer, images, batch_size=256):
    """The outputs of ``layer`` for ``images`` (N, C, H, W), flattened to (N, D) float64."""
    a = activations(model, layer, images, batch_size)
    return a.reshape(len(a), -1).astype(np.float64)


def tsne(feats, seed=0, perplexity=30.0, max_iter=1000, method=None, **kw):
    """(N, D) features -> (N, 2) t-SNE coordinates (scikit-learn's ``TSNE``, PCA initialisation, seeded).

    ``method``: scikit-learn's ``'exact'`` or ``'barnes_hut'``; by default exact up to 500 points, where it
    is the faster of the two (measured: 300 points, about 5x less CPU time), Barnes-Hut above.
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ImportError("viz.tsne needs scikit-learn: pip install 'tinyconv[viz]'") from None
    feats = np.asarray(feats, dtype=np.float64)
    perplexity = min(perplexity, (len(feats) - 1) / 3)
    method = method or ("exact" if len(feats) <= 500 else "barnes_hut")
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter, method=method,
                **kw).fit_transform(feats)


def knn_accuracy(points, labels, k=5):
    """Leave-one-out accuracy of a ``k``-nearest-neighbour vote (Euclidean) on ``points`` (N, D).

    Ties in the vote go to the smallest class label.
    """
    p = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    sq = (p * p).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2 * p @ p.T
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes = labels[nearest]
    classes = np.unique(labels)
    counts = (votes[:, :, None] == classes[None, None, :]).sum(axis=1)
    return float((classes[counts.argmax(axis=1)] == labels).mean())


def plot_embedding(points, labels, path, classes=None, images=None, n_thumbnails=150, title=None, seed=0):
    """A scatter of ``points`` (N, 2) coloured by class; with ``images`` (N, C, H, W) or (N, H, W), a few
    of them (``n_thumbnails``, chosen at random with ``seed``) drawn as thumbnails at their points."""
    points, labels = np.asarray(points), np.asarray(labels)
    fig = _plot.figure((7.5, 6.5))
    ax = fig.subplots()
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    for c in np.unique(labels):
        sel = labels == c
        name = classes[int(c)] if classes is not None else str(c)
        ax.scatter(points[sel, 0], points[sel, 1], s=6, color=cmap(int(c) % 10), label=name, alpha=0.8)
    if images is not None:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(points), size=min(n_thumbnails, len(points)), replace=False)
        for i in pick:
            img, cm = _plot.image_for_display(_plot.to_host(images[i]))
            box = OffsetImage(img, cmap=cm, zoom=0.6)
            ax.add_artist(AnnotationBbox(box, points[i], frameon=True, pad=0.05,
                                         bboxprops={"edgecolor": cmap(int(labels[i]) % 10), "lw": 1}))
    ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE, 5-NN accuracy {knn_accuracy(points, labels):.1%}")
    return _plot.save(fig, path)
