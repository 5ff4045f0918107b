"""Filters, activations, receptive fields and top-k images: what the pictures claim is checked."""
import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn, viz
from tinyconv.models import lenet5


def test_activations_are_the_layer_outputs():
    tc.manual_seed(0)
    model = lenet5()
    x = np.random.default_rng(0).standard_normal((5, 1, 32, 32)).astype(np.float32)
    acts = viz.activations(model, ["features.0", "classifier.2"], x, batch_size=2)
    with tc.no_grad():
        c1 = model.features[0](tc.tensor(x)).numpy()
        f6 = model.classifier[:3](model.features(tc.tensor(x))).numpy()
    # batches of 2 against one batch of 5: float32 products of other shapes may round differently (BLAS)
    np.testing.assert_allclose(acts["features.0"], c1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["classifier.2"], f6, rtol=1e-5, atol=1e-6)
    assert model.training  # mode restored
    assert not model.features[0]._forward_hooks  # hooks removed
    with pytest.raises(ValueError, match="no layer 'features.99'"):
        viz.activations(model, "features.99", x)


def gradient_footprint(model, layer, shape, i, j):
    """The input pixels that influence unit (i, j) of channel 0 of ``layer``: nonzero input gradient."""
    x = tc.tensor(np.random.default_rng(1).standard_normal((1,) + shape).astype(np.float64), requires_grad=True)
    model = model.double()
    kept = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, a, o: kept.setdefault("o", o))
    model(x)
    h.remove()
    kept["o"][0, 0, i, j].backward()
    rows, cols = np.nonzero(np.abs(x.grad.numpy()[0]).sum(0))
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


@pytest.mark.parametrize("layer, unit", [("features.0", (3, 7)), ("features.3", (2, 5)), ("features.6", (0, 0))])
def test_receptive_field_matches_the_gradient_footprint(layer, unit):
    tc.manual_seed(0)
    model = lenet5().eval()
    size, jump, start = viz.receptive_field(model, layer, (1, 32, 32))
    i, j = unit
    expected = (start[0] + i * jump[0], start[1] + j * jump[1],
                start[0] + i * jump[0] + size[0], start[1] + j * jump[1] + size[1])
    assert gradient_footprint(model, layer, (1, 32, 32), i, j) == expected
    assert viz.receptive_field(lenet5(), "features.6", (1, 32, 32))[0] == (32, 32)  # C5 sees the whole digit


def test_receptive_field_with_padding_and_stride():
    tc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, stride=2, padding=1))
    size, jump, start = viz.receptive_field(model, "2", (1, 16, 16))
    assert (size, jump, start) == ((8, 8), (4, 4), (-3, -3))
    # unit (2, 1) of the last layer: rows 5..12, columns 1..8 (a max pool's footprint is its argmax, so the
    # gradient test does not apply; the formula is checked by hand: 3 + (2-1)*1 = 4, 4 + (3-1)*2 = 8)


def test_top_k_ranks_images_and_their_patches_hold_the_response(trained_lenet):
    model, x, _ = trained_lenet
    res = viz.top_k(model, "features.3", x, channel=2, k=6)
    acts = viz.activations(model, "features.3", x)[:, 2]
    best = acts.reshape(len(x), -1).max(1)
    np.testing.assert_allclose(res["score"], np.sort(best)[::-1][:6], rtol=1e-6)
    assert list(res["index"]) == list(np.argsort(-best, kind="stable")[:6])
    for idx, (t, lft, b, r), (i, j), score in zip(res["index"], res["patch"], res["position"], res["score"]):
        assert (b - t, r - lft) == (14, 14)
        # the patch is everything the unit sees: blank out the rest of the image and its value stays
        masked = np.full_like(x[idx], x.min())
        masked[:, t:b, lft:r] = x[idx][:, t:b, lft:r]
        value = viz.activations(model, "features.3", masked[None])[0, 2, i, j]
        assert value == pytest.approx(score, rel=1e-5, abs=1e-5)


def test_plots_write_pngs(tmp_path, trained_lenet):
    model, x, _ = trained_lenet
    from matplotlib.image import imread
    p = viz.plot_filters(model.features[0], tmp_path / "c1.png")
    assert imread(p).shape[2] in (3, 4)
    rgb = nn.Conv2d(3, 4, 3)
    viz.plot_filters(rgb, tmp_path / "rgb.png")
    viz.plot_filters(model.features[3], tmp_path / "c3.png", max_filters=4, max_inputs=3)
    acts = viz.activations(model, "features.1", x[:1])[0]
    viz.plot_activations(acts, tmp_path / "a.png", image=x[0])
    viz.plot_top_k(x, viz.top_k(model, "features.3", x, 0, k=4), tmp_path / "top.png")
    viz.plot_top_k(x, viz.top_k(model, "classifier.2", x, 0, k=4), tmp_path / "top_fc.png")
    for name in ("c1", "rgb", "c3", "a", "top", "top_fc"):
        assert imread(tmp_path / f"{name}.png").std() > 0.05  # a picture, not a blank canvas
    with pytest.raises(ValueError, match="expected a \\(K, C, KH, KW\\) weight"):
        viz.plot_filters(tc.randn(3, 3), tmp_path / "bad.png")


def test_filter_images_are_the_weights(tmp_path, monkeypatch):
    """The RGB case draws each filter as one colour image: zero weights mid-grey, the sign preserved."""
    layers = sys.modules["tinyconv.viz.layers"]
    captured = []

    class Recorder:
        def imshow(self, img, **kw):
            captured.append(np.asarray(img))

        def set_title(self, *a, **kw):
            pass

    monkeypatch.setattr(layers._plot, "grid_axes", lambda fig, n, cols=None: [Recorder() for _ in range(n)])
    w = np.zeros((1, 3, 2, 2), dtype=np.float32)
    w[0, 0, 0, 0], w[0, 2, 1, 1] = 1.0, -0.5
    layers.plot_filters(w, tmp_path / "f.png")
    img = captured[0]
    assert img.shape == (2, 2, 3)                       # one RGB image, channels last
    assert img[0, 0, 0] == 1.0 and img[1, 1, 2] == 0.25 and img[0, 1, 1] == 0.5
