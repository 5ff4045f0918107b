"""The layer modules against PyTorch's: repr, state-dict keys, forward and backward, BatchNorm's running
statistics over several training steps, initialisation, error messages."""
import re

import numpy as np
import pytest

import tinyconv as tc
import tinyconv.nn as nn
import tinyconv.nn.functional as F


def _same_repr(ours, theirs):
    """Our repr is PyTorch 2.13's (the version CI installs), which lists the norms' ``bias=``; older
    PyTorch releases leave it out of BatchNorm's and LayerNorm's repr, so compare without it there."""
    mine, other = repr(ours), repr(theirs)
    if "bias=" not in other and type(ours).__name__.startswith(("BatchNorm", "LayerNorm")):
        mine = re.sub(r", bias=(True|False)", "", mine)
    return mine == other


def _load_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _check_step(torch, ours, theirs, x, rtol=1e-4, atol=1e-5):
    """One forward/backward with the same input and upstream gradient; outputs, input and parameter
    gradients agree.  Returns nothing; parameter gradients are cleared afterwards."""
    a, b = tc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ya, yb = ours(a), theirs(b)
    gy = np.random.default_rng(x.size).standard_normal(ya.shape).astype(np.float32)
    ya.backward(gy)
    yb.backward(torch.tensor(gy))
    np.testing.assert_allclose(ya.numpy(), yb.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)
    ours.zero_grad()
    theirs.zero_grad()


ACTIVATIONS = [("ReLU", (), {}), ("ReLU", (), {"inplace": True}), ("ReLU6", (), {}), ("LeakyReLU", (0.2,), {}),
               ("Sigmoid", (), {}), ("Tanh", (), {}), ("SiLU", (), {}), ("Hardswish", (), {}),
               ("Hardsigmoid", (), {}), ("GELU", (), {}), ("GELU", (), {"approximate": "tanh"}),
               ("Softplus", (2.0, 5.0), {}), ("Softmax", (1,), {}), ("LogSoftmax", (-1,), {})]


@pytest.mark.parametrize("name,args,kw", ACTIVATIONS)
def test_activation_modules_match_torch(torch, name, args, kw):
    ours, theirs = getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
    assert _same_repr(ours, theirs)
    if kw.get("inplace"):  # PyTorch refuses in-place on a leaf that requires grad; tinyconv stays out-of-place
        theirs = getattr(torch.nn, name)(*args)
    x = np.random.default_rng(0).uniform(-6, 6, (4, 5, 3)).astype(np.float32)
    _check_step(torch, ours, theirs, x)


def test_relu_inplace_flag_keeps_the_input():
    x = tc.tensor([-1.0, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert x.numpy().tolist() == [-1.0, 2.0] and y.numpy().tolist() == [0.0, 2.0]


def test_linear_matches_torch_and_repr(torch):
    ours, theirs = nn.Linear(7, 5), torch.nn.Linear(7, 5)
    assert repr(ours) == repr(theirs) == "Linear(in_features=7, out_features=5, bias=True)"
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _load_from_torch(ours, theirs)
    _check_step(torch, ours, theirs, np.random.default_rng(1).standard_normal((3, 2, 7)).astype(np.float32))
    nobias = nn.Linear(7, 5, bias=False)
    assert nobias.bias is None and list(nobias.state_dict()) == ["weight"]
    assert repr(nobias) == "Linear(in_features=7, out_features=5, bias=False)"


def test_linear_init_and_skip_init():
    m = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)  # kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias too
    for p in (m.weight, m.bias):
        v = p.numpy()
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.95 * bound
        assert abs(v.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert m.weight.dtype == np.float32 and m.weight.requires_grad


def test_modules_allocate_empty_then_init(monkeypatch):
    """Under ``skip_init`` the values ``empty`` returned are left alone (here: ones, to be visible)."""
    import tinyconv.nn.linear as linear_mod
    import tinyconv.nn.normalization as norm_mod
    monkeypatch.setattr(linear_mod, "empty", tc.ones)
    monkeypatch.setattr(norm_mod, "empty", lambda *s, **k: tc.full(s, 7.0, **k))
    with nn.init.skip_init():
        lin, bn = nn.Linear(4, 3), nn.BatchNorm2d(3)
    assert (lin.weight.numpy() == 1).all() and (lin.bias.numpy() == 1).all()
    assert (bn.weight.numpy() == 7).all() and (bn.bias.numpy() == 7).all()
    lin, bn = nn.Linear(4, 3), nn.BatchNorm2d(3)
    assert (lin.weight.numpy() != 1).all() and (bn.weight.numpy() == 1).all() and (bn.bias.numpy() == 0).all()

def test_linear_error_names_the_layer():
    with pytest.raises(ValueError, match=r"Linear\(in_features=84, out_features=10\): expected input with last "
                                         r"dimension 84, got shape \(4, 120\)"):
        nn.Linear(84, 10)(tc.randn(4, 120))


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 3)), ("BatchNorm1d", (4, 3, 5)),
                                       ("BatchNorm2d", (4, 3, 5, 6))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_trains_and_evaluates_like_torch(torch, cls, shape, momentum):
    ours, theirs = getattr(nn, cls)(3, momentum=momentum), getattr(torch.nn, cls)(3, momentum=momentum)
    assert _same_repr(ours, theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rng = np.random.default_rng(2)
    with torch.no_grad():  # non-trivial gamma and beta
        theirs.weight.uniform_(0.5, 2.0)
        theirs.bias.normal_()
    _load_from_torch(ours, theirs)
    for step in range(4):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        _check_step(torch, ours, theirs, x)
    for name, buf in theirs.named_buffers():
        np.testing.assert_allclose(getattr(ours, name).numpy(), buf.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.item() == 4
    ours.eval()
    theirs.eval()
    _check_step(torch, ours, theirs, rng.standard_normal(shape).astype(np.float32))
    assert ours.num_batches_tracked.item() == 4


def test_batchnorm_variants_match_torch(torch):
    for kw in ({"affine": False}, {"track_running_stats": False}, {"bias": False}, {"eps": 1e-3, "momentum": 0.5}):
        ours, theirs = nn.BatchNorm2d(4, **kw), torch.nn.BatchNorm2d(4, **kw)
        assert _same_repr(ours, theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        x = np.random.default_rng(3).standard_normal((2, 4, 3, 3)).astype(np.float32)
        _check_step(torch, ours, theirs, x)
        ours.eval()
        theirs.eval()
        _check_step(torch, ours, theirs, x + 1)


def test_batchnorm_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(64\): expected input of shape \(N, 64, H, W\), "
                                         r"got \(8, 32, 14, 14\)"):
        nn.BatchNorm2d(64)(tc.randn(8, 32, 14, 14))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(5\): expected input of shape \(N, 5\) or \(N, 5, L\)"):
        nn.BatchNorm1d(5)(tc.randn(2, 5, 1, 1))


def test_layer_norms_match_torch(torch):
    ours, theirs = nn.LayerNorm((4, 5)), torch.nn.LayerNorm((4, 5))
    assert _same_repr(ours, theirs) and list(ours.state_dict()) == list(theirs.state_dict())
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 2.0)
        theirs.bias.normal_()
    _load_from_torch(ours, theirs)
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5)).astype(np.float32) * 3 + 1
    _check_step(torch, ours, theirs, x)

    class TorchLayerNorm2d(torch.nn.LayerNorm):  # torchvision's ConvNeXt LayerNorm2d
        def forward(self, t):
            return super().forward(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    ours2, theirs2 = nn.LayerNorm2d(3, eps=1e-6), TorchLayerNorm2d(3, eps=1e-6)
    assert list(ours2.state_dict()) == ["weight", "bias"] and ours2.weight.shape == (3,)
    with torch.no_grad():
        theirs2.weight.uniform_(0.5, 2.0)
        theirs2.bias.normal_()
    _load_from_torch(ours2, theirs2)
    _check_step(torch, ours2, theirs2, x)
    with pytest.raises(ValueError, match=r"LayerNorm2d\(\(3,\).*expected input of shape \(N, 3, H, W\)"):
        ours2(tc.randn(2, 4, 2, 2))


def test_dropout_modules():
    x = tc.ones(20, 8, 4, 4)
    for m in (nn.Dropout(0.5), nn.Dropout2d(0.5), nn.DropPath(0.5), nn.DropPath(drop_prob=0.5),
              nn.StochasticDepth(0.5, "row")):
        y = m(x).numpy()
        assert (y == 0).any() and np.allclose(y[y != 0], 2.0)
        m.eval()
        assert m(x) is x
    assert repr(nn.Dropout(0.2)) == "Dropout(p=0.2, inplace=False)"
    assert repr(nn.StochasticDepth(0.1, "batch")) == "StochasticDepth(p=0.1, mode=batch)"
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(-0.1)


def test_dropout_module_reprs_match_torch(torch):
    for name in ("Dropout", "Dropout2d"):
        assert repr(getattr(nn, name)(0.3)) == repr(getattr(torch.nn, name)(0.3))


LOSSES = [("CrossEntropyLoss", {}), ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 1}),
          ("NLLLoss", {"reduction": "sum"}), ("MultiMarginLoss", {"p": 2, "margin": 0.5}),
          ("MSELoss", {}), ("BCEWithLogitsLoss", {"reduction": "none"})]


@pytest.mark.parametrize("name,kw", LOSSES)
def test_loss_modules_match_torch(torch, name, kw):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    if name in ("MSELoss", "BCEWithLogitsLoss"):
        t = rng.uniform(0, 1, (6, 4)).astype(np.float32)
    else:
        t = rng.integers(0, 4, 6)
    weighted = name not in ("MSELoss",)
    w = rng.uniform(0.5, 2, 4).astype(np.float32)
    extra = dict(kw, **({"weight": w} if weighted else {}))
    ours = getattr(nn, name)(**{k: (tc.tensor(v) if k == "weight" else v) for k, v in extra.items()})
    theirs = getattr(torch.nn, name)(**{k: (torch.tensor(v) if k == "weight" else v) for k, v in extra.items()})
    assert _same_repr(ours, theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    a, b = tc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    la, lb = ours(a, tc.tensor(t)), theirs(b, torch.tensor(t))
    gy = rng.standard_normal(la.shape).astype(np.float32)
    la.backward(gy)
    lb.backward(torch.tensor(gy))
    np.testing.assert_allclose(la.numpy(), lb.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_shape_modules_match_torch(torch):
    x = np.random.default_rng(6).standard_normal((2, 6, 3, 4)).astype(np.float32)
    pairs = [(nn.Flatten(), torch.nn.Flatten()), (nn.Flatten(0, 2), torch.nn.Flatten(0, 2)),
             (nn.Unflatten(1, (2, 3)), torch.nn.Unflatten(1, (2, 3))), (nn.Identity(), torch.nn.Identity()),
             (nn.ZeroPad2d(1), torch.nn.ZeroPad2d(1)), (nn.ZeroPad2d((1, 0, 2, 3)), torch.nn.ZeroPad2d((1, 0, 2, 3))),
             (nn.ChannelShuffle(3), torch.nn.ChannelShuffle(3))]
    for ours, theirs in pairs:
        assert _same_repr(ours, theirs)
        a = tc.tensor(x, requires_grad=True)
        ya, yb = ours(a), theirs(torch.tensor(x))
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        gy = np.arange(ya.size, dtype=np.float32).reshape(ya.shape)
        ya.backward(gy)
        b = torch.tensor(x, requires_grad=True)
        theirs(b).backward(torch.tensor(gy))
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())


def test_small_network_trains_like_torch(torch):
    """A Linear-BN-ReLU-Linear MLP with cross-entropy: the same loss and gradients for three SGD steps."""
    ours = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                 torch.nn.Linear(8, 3))
    _load_from_torch(ours, theirs)
    rng = np.random.default_rng(7)
    for _ in range(3):
        x, y = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 3, 6)
        la = F.cross_entropy(ours(tc.tensor(x)), tc.tensor(y))
        lb = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
        la.backward()
        lb.backward()
        assert la.item() == pytest.approx(lb.item(), rel=1e-5)
        tp = dict(theirs.named_parameters())
        with torch.no_grad():
            for name, p in ours.named_parameters():
                np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), rtol=1e-4, atol=1e-6)
                p.data -= 0.1 * p.grad.data
                tp[name] -= 0.1 * tp[name].grad
        ours.zero_grad()
        theirs.zero_grad()
