"""Everyday PyTorch idioms, one test each: the same code runs on tinyconv and on PyTorch and gives the same
result (PyTorch where installed; without it each idiom still runs and is checked against NumPy where noted).

Each case is ``lambda lib, x: ...`` with ``lib`` the ``tinyconv`` or ``torch`` module and ``x`` a (4, 3, 5, 5)
float32 tensor of that library; results (tensors, numbers, tuples of them) are compared as arrays.
"""
import subprocess
import sys

import numpy as np
import pytest

import tinyconv as tc

X = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)

IDIOMS = {
    # max/min along a dim: (values, indices), a named tuple
    "max_dim_unpack": lambda lib, x: tuple(x.max(dim=1)),
    "max_dim_fields": lambda lib, x: (x.max(1).values, x.max(1).indices),
    "max_dim_keepdim": lambda lib, x: tuple(x.max(dim=-1, keepdim=True)),
    "min_dim": lambda lib, x: tuple(lib.min(x, dim=2)),
    "max_all": lambda lib, x: x.max(),
    "max_other": lambda lib, x: lib.max(x, -x),
    "argmax_dim": lambda lib, x: x.argmax(dim=1),
    "argmax_keepdim": lambda lib, x: lib.argmax(x, dim=1, keepdim=True),
    "argmin_all": lambda lib, x: x.argmin(),
    "amax_dims": lambda lib, x: lib.amax(x, dim=(2, 3)),
    "accuracy": lambda lib, x: (x.flatten(1).argmax(1) == lib.tensor([0, 1, 2, 3])).float().mean().item(),
    # the Tensor methods
    "contiguous": lambda lib, x: x.permute(0, 2, 3, 1).contiguous().view(4, -1),
    "std": lambda lib, x: x.std(),
    "std_dim_keepdim": lambda lib, x: x.std(dim=1, keepdim=True),
    "std_correction0": lambda lib, x: x.std(dim=(2, 3), correction=0),
    "std_unbiased_false": lambda lib, x: x.std(1, unbiased=False),
    "masked_fill": lambda lib, x: x.masked_fill(x < 0, 0.0),
    "masked_fill_": lambda lib, x: x.clone().masked_fill_(x > 1, -1.0),
    "topk": lambda lib, x: tuple(x.flatten(1).topk(3, dim=1)),
    "topk_smallest": lambda lib, x: tuple(lib.topk(x, 2, dim=0, largest=False)),
    "repeat": lambda lib, x: x[:2, :1].repeat(1, 2, 1, 3),
    "repeat_new_dims": lambda lib, x: x[0, 0, 0].repeat(2, 3),
    "fill_": lambda lib, x: x.clone().fill_(2.5),
    "copy_": lambda lib, x: lib.zeros(4, 3, 5, 5).copy_(x),
    "copy_broadcast": lambda lib, x: lib.zeros(4, 3, 5, 5).copy_(x[0]),
    # common Tensor methods
    "view": lambda lib, x: x.view(4, -1), "view_as": lambda lib, x: x[0].view_as(x[1]),
    "reshape": lambda lib, x: x.reshape(2, -1), "permute": lambda lib, x: x.permute(0, 2, 3, 1),
    "unsqueeze": lambda lib, x: x.unsqueeze(1), "squeeze": lambda lib, x: x[:, :1].squeeze(1),
    "flatten": lambda lib, x: x.flatten(1), "item": lambda lib, x: x.sum().item(),
    "tolist": lambda lib, x: np.array(x[0, 0].tolist()), "detach": lambda lib, x: x.detach(),
    "zero_": lambda lib, x: x.clone().zero_(), "mean_dim_keepdim": lambda lib, x: x.mean(dim=(2, 3), keepdim=True),
    "sum_dim": lambda lib, x: x.sum(1), "expand_as": lambda lib, x: x[:, :1].expand_as(x),
    "type_as": lambda lib, x: lib.tensor([1, 2]).type_as(x), "t": lambda lib, x: x[0, 0].t(),
    "mT": lambda lib, x: x.mT, "mm": lambda lib, x: x[0, 0].mm(x[0, 1]), "bmm": lambda lib, x: lib.bmm(x[0], x[1]),
    "norm": lambda lib, x: x.norm(), "norm_dim": lambda lib, x: x.norm(dim=1),
    "all_any": lambda lib, x: ((x > -10).all().item(), (x > 2).any().item(), (x > 0).all(dim=1)),
    "add_": lambda lib, x: x.clone().add_(x, alpha=2), "mul_": lambda lib, x: x.clone().mul_(3),
    "sub_": lambda lib, x: x.clone().sub_(1), "div_": lambda lib, x: x.clone().div_(2),
    "clamp_": lambda lib, x: x.clone().clamp_(-0.5, 0.5), "clamp_min": lambda lib, x: x.clamp(min=0),
    "unbind": lambda lib, x: x.unbind(1), "narrow": lambda lib, x: x.narrow(2, 1, 3),
    "index_select": lambda lib, x: x.index_select(1, lib.tensor([2, 0])),
    "gather": lambda lib, x: x.flatten(1).gather(1, lib.tensor([[0, 5]] * 4)),
    "sort": lambda lib, x: tuple(x[0, 0].sort(dim=1, descending=True)),
    "argsort": lambda lib, x: x[0, 0].argsort(dim=0), "flip": lambda lib, x: x.flip(3),
    "int_long_bool": lambda lib, x: ((x * 3).int(), (x * 3).long(), (x > 0).bool()),
    "new_zeros_ones": lambda lib, x: (x.new_zeros(2, 3), x.new_ones((2,)), x.new_tensor([1.5])),
    "compare_methods": lambda lib, x: (x.lt(0), x.gt(0), x.le(0), x.ge(0), x.ne(0)),
    "nonzero": lambda lib, x: (x[0, 0] > 0.5).nonzero(), "square": lambda lib, x: x.square(),
    "facts": lambda lib, x: (x.ndimension(), x.nelement(), x.is_floating_point(), x.element_size(),
                             x.is_contiguous(), x.permute(1, 0, 2, 3).is_contiguous(), x.size(1), x.dim()),
    "add_sub_alpha": lambda lib, x: (x.add(x, alpha=2), x.sub(1.5, alpha=0.5), x.add(1)),
    "reciprocal_log1p": lambda lib, x: (x.reciprocal(), x.abs().log1p()),
    "movedim_unflatten": lambda lib, x: (x.movedim(1, -1), x.movedim((0, 1), (2, 3)), x.unflatten(2, (5, 1))),
    "floor_ceil_round_sign": lambda lib, x: ((x * 3).floor(), (x * 3).ceil(), (x * 3).round(), x.sign()),
    "exp_sqrt_relu_": lambda lib, x: (x.clone().exp_(), x.abs().sqrt_(), x.clone().relu_(), x.clone().sigmoid_(),
                                      x.clone().tanh_()),
    # torch.* functions
    "cat_stack": lambda lib, x: (lib.cat([x, x], dim=1), lib.stack([x, x], dim=0)),
    "arange_likes_full": lambda lib, x: (lib.arange(10), lib.zeros_like(x), lib.ones_like(x), lib.full((2, 3), 1.5)),
    "eye_linspace": lambda lib, x: (lib.eye(3), lib.linspace(0, 1, 5)),
    "is_tensor_numel": lambda lib, x: (lib.is_tensor(x), lib.is_tensor(3), lib.numel(x)),
    "allclose_equal": lambda lib, x: (lib.allclose(x, x + 1e-9), lib.equal(x, x), lib.equal(x, x + 1)),
    "as_tensor": lambda lib, x: lib.as_tensor(np.arange(3.0)),
    "where": lambda lib, x: lib.where(x > 0, x, lib.zeros_like(x)),
    "std_fn": lambda lib, x: lib.std(x, dim=0), "sort_fn": lambda lib, x: tuple(lib.sort(x[0, 0], dim=0)),
    "flip_fn": lambda lib, x: lib.flip(x, (0, 2)),
    # nn.functional
    "one_hot": lambda lib, x: _f(lib).one_hot(lib.tensor([0, 2, 1, 2]), 4),
    "one_hot_infer": lambda lib, x: _f(lib).one_hot(lib.tensor([[0, 2], [1, 3]])),
    "interpolate_nearest": lambda lib, x: _f(lib).interpolate(x, scale_factor=2),
    "interpolate_bilinear": lambda lib, x: _f(lib).interpolate(x, size=(7, 3), mode="bilinear", align_corners=False),
    "interpolate_corners": lambda lib, x: _f(lib).interpolate(x, scale_factor=1.5, mode="bilinear",
                                                               align_corners=True),
    "upsample": lambda lib, x: lib.nn.Upsample(scale_factor=2, mode="nearest")(x),
    "elu": lambda lib, x: (_f(lib).elu(x), lib.nn.ELU(alpha=0.5)(x)),
    "normalize": lambda lib, x: (_f(lib).normalize(x, dim=1), _f(lib).normalize(x.flatten(1), p=1, dim=1)),
    "group_norm": lambda lib, x: lib.nn.GroupNorm(3, 3)(x) + _f(lib).group_norm(x, 1),
    "l1_smooth_l1": lambda lib, x: (lib.nn.L1Loss()(x, x * 0.5), _f(lib).smooth_l1_loss(x, x * 0.1, beta=0.5),
                                    lib.nn.SmoothL1Loss(reduction="none")(x, -x)),
    "bce": lambda lib, x: (lib.nn.BCELoss()(x.sigmoid(), (x > 0).float()),
                           _f(lib).binary_cross_entropy(x.sigmoid(), x.sigmoid() * 0.5, reduction="sum")),
    # grad modes
    "no_grad_decorator": lambda lib, x: lib.no_grad()(lambda: x.clone().requires_grad_() * 2)().requires_grad,
    "inference_mode": lambda lib, x: _run_in(lib.inference_mode(), lambda: (x.requires_grad_() * 2).requires_grad),
    "set_grad_enabled_ctx": lambda lib, x: (_run_in(lib.set_grad_enabled(False), lambda: (x.requires_grad_() * 2)
                                                    .requires_grad), lib.is_grad_enabled()),
    # nn, optim, utils.data
    "flatten_identity": lambda lib, x: (lib.nn.Flatten()(x), lib.nn.Identity()(x)),
    "train_eval": lambda lib, x: (lib.nn.Dropout().train().training, lib.nn.Dropout().eval().training),
    "zero_grad_set_to_none": lambda lib, x: _zero_grad(lib),
    "clip_grad_norm_": lambda lib, x: _clip(lib),
}


def _f(lib):
    return lib.nn.functional


def _run_in(ctx, fn):
    with ctx:
        return fn()


def _zero_grad(lib):
    w = lib.ones(3, requires_grad=True)
    (w * 2).sum().backward()
    opt = lib.optim.SGD([w], lr=0.1)
    opt.zero_grad(set_to_none=True)
    return w.grad is None


def _clip(lib):
    w = lib.ones(4, requires_grad=True)
    (w * 3).sum().backward()
    norm = lib.nn.utils.clip_grad_norm_([w], max_norm=1.0)
    return float(norm), w.grad


def _arrays(v):
    if isinstance(v, (tuple, list)):
        return [a for item in v for a in _arrays(item)]
    if hasattr(v, "detach"):
        return [np.asarray(v.detach().numpy() if hasattr(v.detach(), "numpy") else v)]
    return [np.asarray(v)]


@pytest.mark.parametrize("name", IDIOMS)
def test_idiom_runs_as_in_pytorch(name, request):
    ours = IDIOMS[name](tc, tc.tensor(X.copy()))
    try:
        import torch
    except ImportError:
        return  # ran without error; the values are compared where PyTorch is installed
    torch.manual_seed(0)
    theirs = IDIOMS[name](torch, torch.tensor(X.copy()))
    a, b = _arrays(ours), _arrays(theirs)
    assert len(a) == len(b), f"{name}: {len(a)} results, PyTorch {len(b)}"
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape, f"{name}[{i}]: shape {u.shape}, PyTorch {v.shape}"
        if v.dtype.kind in "biu":
            assert u.dtype.kind == v.dtype.kind, f"{name}[{i}]: dtype {u.dtype}, PyTorch {v.dtype}"
        np.testing.assert_allclose(u.astype(np.float64), v.astype(np.float64), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}[{i}]")


def test_max_dim_is_a_named_tuple_for_any_batch_size():
    """The issue's silent bug: ``v, i = out.max(dim=1)`` on a batch of 2 unpacked the two row maxima."""
    for n in (2, 32):
        out = tc.randn(n, 10)
        v, i = out.max(dim=1)
        assert v.shape == i.shape == (n,) and i.dtype == np.int64
        np.testing.assert_array_equal(i.numpy(), out.numpy().argmax(1))
        r = out.max(dim=1)
        assert r.values is r[0] and r.indices is r[1]


def test_composed_ops_gradcheck():
    import tinyconv.nn.functional as F
    x = tc.randn(2, 4, 3, dtype=np.float64, requires_grad=True)
    t = tc.rand(2, 4, 3, dtype=np.float64)
    for fn in (F.elu, lambda x: F.normalize(x, dim=1), lambda x: F.group_norm(x, 2),
               lambda x: F.l1_loss(x, t), lambda x: F.smooth_l1_loss(x, t, beta=0.5),
               lambda x: F.binary_cross_entropy(x.sigmoid(), t)):
        assert tc.gradcheck(fn, [x])
    with pytest.raises(ValueError, match="probabilities in"):
        F.binary_cross_entropy(x, t)


def test_max_dim_gradient_goes_to_the_returned_index():
    x = tc.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], dtype=np.float64, requires_grad=True)
    x.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])  # the first maximum, as PyTorch
    assert tc.gradcheck(lambda x: x.max(dim=0).values, [tc.randn(4, 3, dtype=np.float64, requires_grad=True)])
    assert tc.gradcheck(lambda x: x.topk(2, dim=1).values, [tc.randn(3, 5, dtype=np.float64, requires_grad=True)])
    assert tc.gradcheck(lambda x: x.std(dim=1), [tc.randn(3, 5, dtype=np.float64, requires_grad=True)])
    assert tc.gradcheck(lambda x: x.repeat(2, 1, 3), [tc.randn(3, 2, dtype=np.float64, requires_grad=True)])
    assert tc.gradcheck(lambda x: x.masked_fill(x > 0, 1.0), [tc.randn(3, 4, dtype=np.float64, requires_grad=True)])
    idx = tc.tensor([[0, 0, 2], [1, 1, 1]])
    assert tc.gradcheck(lambda x: x.gather(1, idx), [tc.randn(2, 3, dtype=np.float64, requires_grad=True)])


def test_in_place_methods_follow_the_in_place_rules():
    w = tc.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w.fill_(0.0)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w.add_(1.0)
    with tc.no_grad():  # the optimiser-update idiom
        w.mul_(2).sub_(0.5)
    np.testing.assert_array_equal(w.numpy(), [1.5, 1.5, 1.5])
    y = w * 1.0
    z = y * y  # saves y
    y.add_(1.0)  # a recorded write: y's version moves on
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.sum().backward()
    a = tc.randn(3, dtype=np.float64, requires_grad=True)
    src = tc.randn(3, dtype=np.float64, requires_grad=True)
    out = (a * 1.0).copy_(src * 2)  # differentiable in src, not in the overwritten a
    out.sum().backward()
    np.testing.assert_array_equal(src.grad.numpy(), [2, 2, 2])
    assert a.grad is None or not a.grad.numpy().any()
    v0 = src._version
    with tc.no_grad():
        src.fill_(1.0)
    assert src._version == v0 + 1


def test_set_grad_enabled_as_a_function_and_inference_mode_as_a_decorator():
    assert tc.is_grad_enabled()
    tc.set_grad_enabled(False)
    try:
        assert not tc.is_grad_enabled()
    finally:
        tc.set_grad_enabled(True)
    assert tc.is_grad_enabled()

    @tc.inference_mode()
    def f(x):
        return (x * 2).requires_grad

    @tc.set_grad_enabled(False)
    def g(x):
        return (x * 2).requires_grad

    x = tc.ones(2, requires_grad=True)
    assert tc.is_grad_enabled() and not f(x) and not g(x) and (x * 2).requires_grad


def test_float16_is_a_name_with_a_clear_error():
    assert tc.float16 == np.float16
    x = tc.ones(1, 2).half()  # stored, as PyTorch allows
    assert x.dtype == np.float16
    for run in (lambda: tc.nn.Linear(2, 2)(x), lambda: tc.nn.ReLU()(x), lambda: tc.nn.Conv2d(1, 1, 1)(x.view(1, 1, 1, 2))):
        with pytest.raises(TypeError, match="float16"):
            run()
    with pytest.raises(TypeError, match="float32 and float64 only"):
        tc.nn.Linear(2, 2).half()


def test_models_after_a_plain_import_is_lazy():
    code = ("import sys, tinyconv; assert 'tinyconv.models' not in sys.modules; "
            "m = tinyconv.models.resnet18; assert 'tinyconv.models' in sys.modules; "
            "from tinyconv.utils.data import DataLoader; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        tc.nosuch  # noqa: B018


def test_device_and_dtype_names():
    assert tc.device("cpu") == "cpu" and tc.long == np.int64 and tc.float == np.float32
    assert tc.get_default_dtype() == tc.float32 and tc.tensor([1.0]).dtype == tc.float32


def test_kernels_compiled_reports_the_numba_cache(tmp_path, monkeypatch):
    from tinyconv import backend
    assert isinstance(tc.kernels_compiled(), bool)
    with pytest.raises(ValueError, match="unknown kernel"):
        tc.kernels_compiled("nosuch")
    with backend.use_kernels("numpy"):
        assert tc.kernels_compiled()  # nothing is compiled on the NumPy references
    # a cache folder holding an index for the im2col family only
    monkeypatch.setattr("tinyconv.idioms._cache_dirs", lambda d: [str(tmp_path)])
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert not tc.kernels_compiled("im2col")
    (tmp_path / f"im2col._im2col_cpu-80.{tag}.nbi").write_bytes(b"")
    assert tc.kernels_compiled("im2col", "col2im") and not tc.kernels_compiled("max_pool2d_forward")
