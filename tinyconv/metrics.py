"""Classification metrics: top-1 and top-k accuracy, the confusion matrix.

Shapes: N samples, C classes.  ``scores`` is an (N, C) array or Tensor of class scores (logits or
probabilities: only their order matters), ``targets`` an (N,) array of integer labels in ``[0, C)``.
Every function accepts NumPy or CuPy arrays and Tensors, and returns plain Python numbers (or a NumPy
array for the confusion matrix).

Top-k accuracy, as defined in the lectures (lecture 000, "Точность top-K"):

    topK = (1/S) * sum_j 1{ l_j in {i_1^j, ..., i_K^j} }

where ``i_1^j, ..., i_K^j`` are the indices of the K highest scores of sample j and ``l_j`` its true
class.  Ties are broken towards the smaller class index (as a stable sort of the scores in decreasing
order would), so the result never depends on the backend's sorting.
"""
import numpy as np

from . import backend
from .core import Tensor


def _raw(x):
    """The backend array of a Tensor; arrays and lists pass through as arrays."""
    return x.data if isinstance(x, Tensor) else (x if backend.is_array(x) else np.asarray(x))


def _arrays(scores, targets):
    scores, targets = _raw(scores), _raw(targets)
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (N, C), got {tuple(scores.shape)}")
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"expected targets of shape ({scores.shape[0]},) to match scores {tuple(scores.shape)}, "
                         f"got {tuple(targets.shape)}")
    xp = backend.get_array_module(scores)
    return scores, xp.asarray(targets).astype(np.int64)


def true_class_rank(scores, targets):
    """(N,) rank of each sample's true class: 0 when it has the highest score, 1 when it is second, ...

    The rank counts the classes ranked above the true one: those with a higher score, and those with an
    equal score and a smaller index.
    """
    scores, targets = _arrays(scores, targets)
    xp = backend.get_array_module(scores)
    n, c = scores.shape
    true_score = scores[xp.arange(n), targets][:, None]                 # (N, 1)
    before = xp.arange(c)[None, :] < targets[:, None]                   # (N, C): index smaller than the label
    above = (scores > true_score) | ((scores == true_score) & before)
    return above.sum(axis=1)


def correct_top_k(scores, targets, ks=(1, 5)):
    """Number of samples whose true class is among the k highest scores, for each k in ``ks`` (a list).

    ``k`` larger than the number of classes counts every sample (the whole ranking is "the top k").
    """
    rank = true_class_rank(scores, targets)
    return [int((rank < k).sum()) for k in ks]


def top_k_accuracy(scores, targets, k=5):
    """Fraction of samples whose true class is among the ``k`` highest scores (the lectures' top-K)."""
    n = len(_raw(targets))
    if n == 0:
        raise ValueError("top_k_accuracy of an empty batch is undefined")
    return correct_top_k(scores, targets, [k])[0] / n


def accuracy(scores, targets):
    """Top-1 accuracy: fraction of samples whose highest score is their true class."""
    return top_k_accuracy(scores, targets, k=1)


def confusion_matrix(predictions, targets, num_classes):
    """(C, C) int64 NumPy matrix ``M`` with ``M[t, p]`` = number of samples of true class t predicted as p.

    Rows are true classes, columns predicted ones (scikit-learn's convention), so the diagonal holds the
    correct predictions and ``M.sum(axis=1)`` the class sizes.  ``predictions`` is either (N,) labels or
    (N, C) scores, reduced by argmax (ties: the smaller index).
    """
    predictions = backend.to_numpy(_raw(predictions))
    targets = backend.to_numpy(_raw(targets)).astype(np.int64)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    predictions = predictions.astype(np.int64)
    if predictions.shape != targets.shape:
        raise ValueError(f"expected predictions and targets of the same length, got {predictions.shape} "
                         f"and {targets.shape}")
    for name, v in (("predictions", predictions), ("targets", targets)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{v.min()}, {v.max()}]")
    counts = np.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)
