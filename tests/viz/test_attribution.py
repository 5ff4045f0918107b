"""Occlusion, saliency and Grad-CAM point at the pixels that decide the label."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F, nn, viz


def strokes(x):
    return x[0] > x.min() + 0.5 * (x.max() - x.min())


def test_occlusion_is_lowest_over_the_strokes(trained_lenet):
    model, x, y = trained_lenet
    for i in range(5):
        heat, grid = viz.occlusion(model, x[i], int(y[i]), patch=6, stride=2, fill=float(x.min()))
        s = strokes(x[i])
        assert heat.shape == (32, 32) and grid.shape == (14, 14)
        assert np.nanmean(heat[s]) < np.nanmean(heat[~s])  # hiding ink costs confidence, hiding background not
        r, c = np.unravel_index(np.argmin(heat), heat.shape)
        assert s[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].any()  # the most decisive spot is on a stroke
        far = np.ones_like(s)
        rows, cols = np.nonzero(x[i, 0] > x[i].min())  # any ink, however faint (not only the strokes)
        for a, b in zip(rows, cols):
            far[max(a - 6, 0):a + 7, max(b - 6, 0):b + 7] = False
        with tc.no_grad():
            p0 = F.softmax(model(tc.tensor(x[i:i + 1])), dim=1).numpy()[0, int(y[i])]
        if far.any():  # patches that touch no ink change nothing
            np.testing.assert_allclose(heat[far], p0, rtol=1e-5)


def test_occlusion_batches_equal_one_forward_per_position(trained_lenet):
    model, x, y = trained_lenet
    heat, grid = viz.occlusion(model, x[0], 3, patch=8, stride=8, fill=0.0, batch_size=5)
    for (a, b) in [(0, 0), (1, 2), (3, 3)]:
        occluded = x[0].copy()
        occluded[:, 8 * a:8 * a + 8, 8 * b:8 * b + 8] = 0.0
        with tc.no_grad():
            p = F.softmax(model(tc.tensor(occluded[None])), dim=1).numpy()[0, 3]
        assert grid[a, b] == pytest.approx(p, rel=1e-5)
    with pytest.raises(ValueError, match="patch"):
        viz.occlusion(model, x[0], 3, patch=40)


def test_saliency_is_the_input_gradient_and_lives_on_the_digit(trained_lenet):
    model, x, y = trained_lenet
    sal = viz.saliency(model, x[0], int(y[0]))
    xt = tc.tensor(x[:1], requires_grad=True)
    model(xt)[0, int(y[0])].backward()
    np.testing.assert_allclose(sal, np.abs(xt.grad.numpy()[0]).max(0), rtol=1e-6)
    near = np.zeros_like(strokes(x[0]))
    r, c = np.nonzero(strokes(x[0]))
    near[max(r.min() - 2, 0):r.max() + 3, max(c.min() - 2, 0):c.max() + 3] = True
    assert sal[near].mean() > 3 * sal[~near].mean()


def test_grad_cam_finds_the_feature_the_class_depends_on():
    """Channel 0 detects bright pixels, channel 1 dark ones; class k's score is the mean of channel k."""
    tc.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            a = F.relu(self.conv(x))
            return a.mean(axis=(2, 3))

    net = Net()
    with tc.no_grad():
        net.conv.weight.data[:] = 0
        net.conv.weight.data[0, 0, 1, 1] = 1.0
        net.conv.weight.data[1, 0, 1, 1] = -1.0
        net.conv.bias.data[:] = 0
    x = np.zeros((1, 16, 16), np.float32)
    x[0, 2:6, 2:6] = 1.0       # a bright square top left
    x[0, 10:14, 10:14] = -1.0  # a dark square bottom right
    for target, inside, outside in [(0, np.s_[2:6, 2:6], np.s_[10:14, 10:14]),
                                    (1, np.s_[10:14, 10:14], np.s_[2:6, 2:6])]:
        cam = viz.grad_cam(net, "conv", x, target)
        assert cam.shape == (16, 16) and cam.min() >= 0
        assert cam[inside].min() > 0.5 * cam.max() and cam[outside].max() < 0.05 * cam.max()


def test_grad_cam_on_lenet(trained_lenet, tmp_path):
    model, x, y = trained_lenet
    cam = viz.grad_cam(model, "features.3", x[1], int(y[1]))
    assert cam.shape == (32, 32) and cam.min() >= 0 and cam.max() > 0
    with pytest.raises(ValueError, match="must produce"):
        viz.grad_cam(model, "classifier.1", x[1], int(y[1]))
    heat, _ = viz.occlusion(model, x[1], int(y[1]))
    from matplotlib.image import imread
    p = viz.plot_heatmaps(x[1], [heat, cam], tmp_path / "h.png", titles=["occlusion", "Grad-CAM"])
    assert imread(p).std() > 0.05
