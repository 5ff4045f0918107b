"""The ops, a training step and the optimisers on device 'cuda', against the same computation on the CPU.

Every test runs twice, through the ``gpu`` fixture:

- ``fake-cupy``: always; tinyconv sees ``tests/gpu/fake_cupy.py`` as CuPy and runs its ``numba.cuda`` kernels
  on Numba's CUDA simulator (no GPU needed).  Its arrays refuse implicit conversion to NumPy and record every
  device-to-host transfer, so these tests also catch NumPy calls on device arrays and host syncs.
- ``cuda``: on a real GPU with CuPy; skipped, with the reason, where there is none.

Shapes stay tiny: under the simulator each CUDA thread is a Python thread.
"""
import os
import sys

import numpy as np
import pytest

import tinyconv as tc
import tinyconv.functional as F
from tinyconv import backend, nn, optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_cupy  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")


def _device(request, monkeypatch, kernels):
    if request.param == "cuda":
        if not tc.cuda.is_available():
            pytest.skip("no CUDA GPU (or CuPy is not installed): the real-GPU run of this test is skipped")
        monkeypatch.setattr(backend, "_cuda_rng", None)
    else:
        from numba import config
        if not config.ENABLE_CUDASIM:
            pytest.skip("a real GPU is present: the fake-CuPy run needs Numba's CUDA simulator")
        fake_cupy.install(monkeypatch, kernels)
    return request.param


DEVICES = ["fake-cupy", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def gpu(request, monkeypatch):
    """``'fake-cupy'`` (the ``_cuda`` kernels on Numba's simulator) or ``'cuda'``: what stands behind device
    'cuda' in this test."""
    return _device(request, monkeypatch, "simulator")


@pytest.fixture(params=DEVICES)
def gpu_fast(request, monkeypatch):
    """As ``gpu``, but the fake-CuPy run serves the kernels by their NumPy references (whole training steps)."""
    return _device(request, monkeypatch, "reference")


def host(t):
    return None if t is None else np.asarray(t.numpy() if isinstance(t, tc.Tensor) else t)


def on_both(fn, *arrays, requires_grad=True):
    """Run ``fn(*tensors)`` on the CPU and on 'cuda' from the same host arrays; backward of ``sum(out * g)``
    with one fixed random ``g``.  Returns ``(cpu_out, gpu_out, cpu_grads, gpu_grads)`` as NumPy arrays."""
    results = []
    for device in ("cpu", "cuda"):
        ts = [tc.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f").to(device) for a in arrays]
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in ts]
        out = fn(*leaves)
        assert out.device == device
        if requires_grad:
            g = np.random.default_rng(7).standard_normal(out.shape).astype(out.dtype)
            (out * tc.tensor(g).to(device)).sum().backward()
        results.append((host(out), [host(t.grad) for t in leaves]))
    (yc, gc), (yg, gg) = results
    return yc, yg, gc, gg


def assert_same(cpu, gpu, rtol=1e-5, atol=1e-6):
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=atol)


def check(fn, *arrays, rtol=1e-5, atol=1e-6, requires_grad=True):
    yc, yg, gc, gg = on_both(fn, *arrays, requires_grad=requires_grad)
    assert_same(yc, yg, rtol, atol)
    for a, b in zip(gc, gg):
        if a is not None or b is not None:
            assert_same(a, b, rtol, atol)


def randn(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed + len(shape)).standard_normal(shape).astype(dtype)


# -- ops ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 0, 1, 2), (1, 2, 2, 1)])
def test_conv2d(gpu, dtype, stride, padding, dilation, groups):
    x, w, b = randn(2, 4, 5, 5, dtype=dtype), randn(4, 4 // groups, 3, 3, dtype=dtype), randn(4, dtype=dtype)
    check(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), x, w, b)


@pytest.mark.parametrize("algorithm, groups", [("winograd", 1), ("winograd4", 1), ("kn2row", 1), ("naive", 1),
                                               ("naive", 2), ("direct", 2)])
def test_conv2d_under_a_hand_picked_algorithm(gpu_fast, algorithm, groups):
    """Without CUDA twins, Winograd's and the naive loops' references run on the CuPy arrays (``xp=cupy``); kn2row
    runs the CUDA im2col and col2im."""
    x, w, b = randn(2, 4, 6, 5), randn(6, 4 // groups, 3, 3), randn(6)
    with backend.conv_algorithm(algorithm):
        check(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=groups), x, w, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_whose_window_is_the_whole_image(gpu_fast, groups):
    x, w, b = randn(3, 4, 5, 5), randn(6, 4 // groups, 5, 5), randn(6)
    check(lambda x, w, b: F.conv2d(x, w, b, groups=groups), x, w, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_conv2d(gpu, dtype):
    x, w = randn(1, 3, 5, 4, dtype=dtype), randn(6, 1, 3, 3, dtype=dtype)
    check(lambda x, w: F.conv2d(x, w, None, 1, 1, 1, groups=3), x, w)


@pytest.mark.parametrize("groups, activation", [(1, "relu6"), (2, None), (4, "relu")])
def test_conv2d_batch_norm_in_inference(gpu_fast, groups, activation):
    """The fused inference op (``nn.conv_norm_activation``) on the device: its batch norm runs on the CuPy arrays
    (``batch_norm_eval``'s reference, into the convolution's output), without host syncs."""
    x, w = randn(2, 4, 6, 5), randn(4, 4 // groups, 3, 3)
    mean, var, gamma, beta = randn(4, seed=1), np.abs(randn(4, seed=2)) + 0.5, randn(4, seed=3), randn(4, seed=4)
    outs = []
    for device in ("cpu", "cuda"):
        args = [tc.tensor(a).to(device) for a in (x, w, mean, var, gamma, beta)]
        fake_cupy.SYNCS.clear()
        with tc.no_grad():
            y = F.conv2d_batch_norm(args[0], args[1], None, *args[2:], padding=1, groups=groups,
                                    activation=activation)
        assert y.device == device and (device == "cpu" or fake_cupy.SYNCS == [])
        outs.append(host(y))
    assert_same(outs[0], outs[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling(gpu, dtype):
    x = randn(1, 2, 5, 6, dtype=dtype)
    check(lambda x: F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True), x)
    check(lambda x: F.avg_pool2d(x, 2, 2, padding=1, count_include_pad=False), x)
    check(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), x)
    check(lambda x: F.adaptive_max_pool2d(x, (2, 3)), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_response_norm(gpu, dtype):
    check(lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=2.0), randn(1, 5, 2, 2, dtype=dtype))


def test_batch_norm_and_layer_norm(gpu_fast):
    x, w, b = randn(3, 4, 2, 2), randn(4) + 1, randn(4)
    check(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), x, w, b, rtol=1e-4, atol=1e-5)
    check(lambda x: F.layer_norm(x, (2, 2)), x, rtol=1e-4, atol=1e-5)
    stats = {}
    for device in ("cpu", "cuda"):
        bn = nn.BatchNorm2d(4).to(device)
        bn(tc.tensor(x).to(device))
        bn.eval()
        stats[device] = host(bn(tc.tensor(x).to(device))), host(bn.running_mean), host(bn.running_var)
    for a, b in zip(stats["cpu"], stats["cuda"]):
        assert_same(a, b, rtol=1e-4, atol=1e-5)


def test_activations_and_linear(gpu_fast):
    x, w, b = randn(3, 5), randn(4, 5), randn(4)
    check(lambda x, w, b: F.linear(x, w, b), x, w, b)
    for f in (F.relu, F.tanh, F.sigmoid, F.gelu, F.silu, F.hardswish, F.leaky_relu,
              lambda x: F.softmax(x, 1), lambda x: F.log_softmax(x, 1)):
        check(f, x, rtol=1e-5, atol=1e-6)


def test_losses(gpu_fast):
    z, t = randn(4, 5), np.array([0, 3, 4, 1])
    check(lambda z, t: F.cross_entropy(z, t), z, t)
    check(lambda z, t: F.cross_entropy(z, t, label_smoothing=0.1, ignore_index=3), z, t)
    check(lambda z, t: F.nll_loss(F.log_softmax(z, 1), t), z, t)
    check(lambda z, y: F.mse_loss(z, y), z, randn(4, 5, seed=1))
    check(lambda z, y: F.binary_cross_entropy_with_logits(z, y), z, (randn(4, 5, seed=2) > 0).astype(np.float32))


def test_shape_ops_and_reductions(gpu_fast):
    x = randn(2, 3, 4)
    check(lambda x: F.cat([x, x * 2], 1).permute(2, 0, 1).reshape(4, -1)[1:3, ::2], x)
    check(lambda x: x.sum(axis=(0, 2)) + x.mean() + x.var(axis=1).max() + x.amax(axis=2).sum(), x)
    check(lambda x: F.pad(x, (1, 2)) ** 2, x)


def test_idiom_ops(gpu_fast):
    x = randn(2, 3, 4, 5)
    check(lambda x: x.max(dim=1).values + x.min(1, keepdim=True).values, x)
    check(lambda x: x.flatten(1).topk(3, dim=1).values * 2 + x.flatten(1).sort(dim=1).values[:, :3], x)
    check(lambda x: x.masked_fill(x > 1.5, 0.5).repeat(1, 2, 1, 1).std(dim=1), x)
    check(lambda x: F.interpolate(x, scale_factor=2).sum() + F.interpolate(x, size=(3, 7), mode="bilinear",
                                                                           align_corners=True).sum(), x)
    check(lambda x: F.group_norm(x, 3) + F.elu(x) + F.normalize(x, dim=1), x, rtol=1e-4, atol=1e-5)
    idx = tc.tensor(np.array([[0, 3], [2, 2]])).to("cuda")
    assert np.array_equal(host(tc.tensor(x).to("cuda").flatten(2)[:, 0].gather(1, idx)),
                          np.take_along_axis(x.reshape(2, 3, -1)[:, 0], np.array([[0, 3], [2, 2]]), 1))
    assert np.array_equal(host(tc.tensor(x).to("cuda").argmax(dim=1)), x.argmax(1))
    assert np.array_equal(host(F.one_hot(tc.tensor([1, 0]).to("cuda"), 3)), [[0, 1, 0], [1, 0, 0]])


# -- dropout and initialisation: one seed, same numbers on every device --------------------------------
def test_dropout_draws_masks_on_the_device_from_the_seed(gpu_fast):
    x = tc.ones(64, 64).to("cuda")
    tc.manual_seed(5)
    a = host(F.dropout(x, 0.25))
    tc.manual_seed(5)
    b = host(F.dropout(x, 0.25))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)}
    assert 0.15 < (a == 0).mean() < 0.35


def test_same_seed_same_initial_weights_on_cpu_and_gpu(gpu_fast):
    from tinyconv.models import lenet5
    tc.manual_seed(3)
    cpu = lenet5()
    tc.manual_seed(3)
    gpu_model = lenet5().to("cuda")
    for (name, p), (_, q) in zip(cpu.named_parameters(), gpu_model.named_parameters()):
        assert q.device == "cuda"
        np.testing.assert_array_equal(host(q), host(p), err_msg=name)


# -- a training step ----------------------------------------------------------------------------------
def lenet_step(device, optimizer_cls, steps=2, **opt):
    from tinyconv.models import lenet5
    tc.manual_seed(0)
    model = lenet5(num_classes=10, in_channels=1).to(device)
    optimizer = optimizer_cls(model.parameters(), **opt)
    rng = np.random.default_rng(1)
    x = tc.tensor(rng.standard_normal((2, 1, 32, 32)).astype(np.float32)).to(device)
    y = tc.tensor(np.array([3, 7])).to(device)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss)
    return [host(l) for l in losses], {k: host(v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer_cls, opt", [(optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-4)),
                                                (optim.Adam, dict(lr=1e-3))])
def test_lenet_training_steps_match_the_cpu_without_host_syncs(gpu_fast, optimizer_cls, opt):
    cpu_losses, cpu_state = lenet_step("cpu", optimizer_cls, **opt)
    fake_cupy.SYNCS.clear()
    gpu_losses, gpu_state = lenet_step("cuda", optimizer_cls, **opt)
    if gpu_fast == "fake-cupy":
        # forward, loss, backward and the optimiser queued work only; the transfers are the test's own host()
        mine = [s for s in fake_cupy.SYNCS if "test_cuda_ops.py" not in s[1] and "to_numpy" not in s[1]]
        assert mine == []
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4)
    for k in cpu_state:
        np.testing.assert_allclose(gpu_state[k], cpu_state[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_other_optimizers_and_gradient_clipping_on_the_device(gpu_fast):
    for cls in (optim.RMSprop, optim.Adagrad, optim.Adadelta, optim.AdamW, optim.SGD):
        states = []
        for device in ("cpu", "cuda"):
            p = nn.Parameter(tc.tensor(randn(3, 4)).to(device))
            opt = cls([p], lr=0.01)
            grads = [tc.tensor(randn(3, 4, seed=s) * 10).to(device) for s in (4, 5)]
            fake_cupy.SYNCS.clear()
            for g in grads:
                p.grad = g
                norm = nn.utils.clip_grad_norm_([p], max_norm=1.0)
                opt.step()
            assert fake_cupy.SYNCS == [], (cls.__name__, fake_cupy.SYNCS)   # nothing waited for the device
            states.append((host(p), host(norm)))
        for a, b in zip(*states):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=cls.__name__)


def test_setitem_and_its_version_check_on_the_device(gpu_fast):
    def write(x, v):
        y = x * 2.0
        y[:, 1] = v * 3.0
        y[y > 1.0] = 0.5
        return y
    check(write, randn(3, 4), randn(3))
    y = tc.tensor(randn(3)).to("cuda").requires_grad_() * 1.0
    z = y * y
    y[0] = 0.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.sum().backward()


def test_an_out_of_range_target_makes_the_gpu_loss_nan_instead_of_waiting_for_the_device(gpu_fast):
    z = tc.tensor(randn(3, 4)).to("cuda")
    loss = F.cross_entropy(z, tc.tensor(np.array([0, 9, 1])).to("cuda"))
    assert np.isnan(host(loss))
    with pytest.raises(IndexError, match="target index 9 is out of range for 4 classes"):
        F.cross_entropy(z.cpu(), tc.tensor(np.array([0, 9, 1])))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "densenet121", "alexnet"])
def test_zoo_training_step_on_the_device_waits_for_nothing(gpu_fast, name):
    """One Adam step of a zoo model (batch norm, residual sums, depthwise convolutions, concatenation,
    dropout, adaptive pooling) on 'cuda': no host syncs, and the same loss as on the CPU.

    64x64, not 32x32: at 32x32 the last stages are 1x1 maps whose batch norm over 2 samples is so
    ill-conditioned that a 1e-6 relative change of the input moves mobilenet_v2's loss by 10% (float32 and
    float64 on the CPU alone differ by 9%), and cuBLAS's summation order differs from OpenBLAS's (seen on an
    H100); at 64x64 that sensitivity is 5e-6."""
    from tinyconv import models
    size = 64
    x, y = randn(2, 3, size, size), np.array([1, 4])
    losses = []
    for device in ("cpu", "cuda"):
        tc.manual_seed(0)
        model = getattr(models, name)(num_classes=5).to(device)
        for m in model.modules():      # dropout masks differ between devices (tested above): switch it off
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        opt = optim.Adam(model.parameters(), lr=1e-3)
        xd, yd = tc.tensor(x).to(device), tc.tensor(y).to(device)
        fake_cupy.SYNCS.clear()
        loss = F.cross_entropy(model(xd), yd)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert fake_cupy.SYNCS == [], fake_cupy.SYNCS
        losses.append(host(loss))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
