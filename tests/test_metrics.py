"""tinyconv.metrics against hand-computed cases and a naive sort-based reference."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import metrics

# Three samples, four classes.  Order of the scores per row (highest first):
#   row 0: class 2 (0.9), 0 (0.5), 3 (0.3), 1 (0.1)      label 2 -> rank 0
#   row 1: class 1 (0.8), 3 (0.7), 0 (0.2), 2 (0.0)      label 3 -> rank 1
#   row 2: class 0 (0.6), 1 (0.5), 2 (0.4), 3 (-1.0)     label 3 -> rank 3
SCORES = np.array([[0.5, 0.1, 0.9, 0.3],
                   [0.2, 0.8, 0.0, 0.7],
                   [0.6, 0.5, 0.4, -1.0]], dtype=np.float32)
LABELS = np.array([2, 3, 3])


def test_accuracy_hand_computed():
    assert metrics.accuracy(SCORES, LABELS) == pytest.approx(1 / 3)


@pytest.mark.parametrize("k, expected", [(1, 1 / 3), (2, 2 / 3), (3, 2 / 3), (4, 1.0), (5, 1.0)])
def test_top_k_hand_computed(k, expected):
    assert metrics.top_k_accuracy(SCORES, LABELS, k=k) == pytest.approx(expected)


def test_correct_top_k_counts_and_ranks():
    assert metrics.true_class_rank(SCORES, LABELS).tolist() == [0, 1, 3]
    assert metrics.correct_top_k(SCORES, LABELS, ks=(1, 2, 3, 4)) == [1, 2, 2, 3]


def test_ties_break_towards_smaller_index():
    scores = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    labels = np.array([0, 1])
    # Both classes 0 and 1 score 1.0: class 0 is ranked first, class 1 second.
    assert metrics.true_class_rank(scores, labels).tolist() == [0, 1]
    assert metrics.accuracy(scores, labels) == 0.5
    assert metrics.top_k_accuracy(scores, labels, k=2) == 1.0


def test_accepts_tensors():
    assert metrics.top_k_accuracy(tc.tensor(SCORES), tc.tensor(LABELS), k=2) == pytest.approx(2 / 3)


@given(st.integers(1, 12), st.integers(2, 9), st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_top_k_matches_stable_sort_reference(n, c, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n, c)).astype(np.float64)     # small integers: many ties
    labels = rng.integers(0, c, size=n)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    expected = np.mean([labels[i] in top[i] for i in range(n)])
    assert metrics.top_k_accuracy(scores, labels, k=k) == pytest.approx(expected)


def test_confusion_matrix_hand_computed():
    preds = np.array([0, 1, 1, 2, 2, 2, 0])
    targets = np.array([0, 1, 2, 2, 2, 0, 0])
    expected = np.array([[2, 0, 1],     # true 0: predicted 0 twice, 2 once
                         [0, 1, 0],     # true 1: predicted 1
                         [0, 1, 2]])    # true 2: predicted 1 once, 2 twice
    m = metrics.confusion_matrix(preds, targets, num_classes=3)
    assert m.tolist() == expected.tolist()
    assert m.trace() / m.sum() == pytest.approx(np.mean(preds == targets))


def test_confusion_matrix_from_scores_uses_argmax():
    m = metrics.confusion_matrix(SCORES, LABELS, num_classes=4)
    assert m.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]]


def test_bad_shapes_and_labels_are_reported():
    with pytest.raises(ValueError, match=r"targets of shape \(3,\)"):
        metrics.accuracy(SCORES, LABELS[:2])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        metrics.accuracy(SCORES[0], LABELS)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        metrics.confusion_matrix(np.array([0, 1]), np.array([0, 3]), num_classes=3)
