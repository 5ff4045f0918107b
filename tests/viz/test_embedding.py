"""t-SNE of a layer's features and the k-NN accuracy that says how well the map separates the classes."""
import numpy as np
import pytest

from tinyconv import viz


def test_knn_accuracy_by_hand():
    points = np.array([[0.0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10], [0.5, 0.5]])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])   # the last point sits among the zeros
    assert viz.knn_accuracy(points, labels, k=3) == pytest.approx(6 / 7)
    assert viz.knn_accuracy(points, labels, k=1) == pytest.approx(3 / 7)  # the zeros: (0.5, 0.5) is nearest
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((200, 5))
    assert viz.knn_accuracy(noise, rng.integers(0, 10, 200)) < 0.3  # random labels: about chance


def test_tsne_of_lenet_f6_separates_the_digits(trained_lenet, tmp_path):
    pytest.importorskip("sklearn")
    model, x, y = trained_lenet
    n = 250
    feats = viz.features(model, "classifier.2", x[:n])
    assert feats.shape == (n, 84)
    points = viz.tsne(feats, seed=0, max_iter=400)
    assert points.shape == (n, 2)
    acc = viz.knn_accuracy(points, y[:n], k=5)
    assert acc > 0.85, acc                                                  # measured: 0.9
    assert viz.knn_accuracy(feats, y[:n]) > viz.knn_accuracy(x[:n].reshape(n, -1), y[:n])  # F6 beats pixels
    from matplotlib.image import imread
    p = viz.plot_embedding(points, y[:n], tmp_path / "t.png", images=x[:n, 0], n_thumbnails=20)
    assert imread(p).std() > 0.05
