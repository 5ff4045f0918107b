"""The workloads the suite times, each built for three implementations on the same data and weights.

Implementations: ``tinyconv`` (the default CPU path: Numba kernels), ``numpy`` (tinyconv on its readable NumPy
reference kernels, ``backend.use_kernels('numpy')``) and ``torch`` (PyTorch on the CPU, when installed).
Every builder returns ``{implementation: zero-argument callable}``; one call is one unit of work (a training
step, or a convolution's forward and backward).

FLOPs of a convolution's forward and backward: ``3 * 2 * MACs`` with ``MACs = N*K*OH*OW*(C/G)*KH*KW`` (the
forward, the input gradient and the weight gradient each cost one forward's multiply-adds).
"""
import contextlib

import numpy as np

import tinyconv
import tinyconv.functional as F
import tinyconv.models
from tinyconv import backend, optim

try:
    import torch
except ImportError:  # the suite then times tinyconv alone
    torch = None


def implementations(with_numpy=True, with_torch=True):
    names = ["tinyconv"] + (["numpy"] if with_numpy else []) + (["torch"] if with_torch and torch else [])
    return names


def _kernels(impl):
    """The kernel mode an implementation runs under (``numpy`` is tinyconv on its reference kernels)."""
    return backend.use_kernels("numpy") if impl == "numpy" else contextlib.nullcontext()


def _under(impl, fn):
    ctx = impl  # bind now

    def call():
        with _kernels(ctx):
            fn()
    return call


# -- convolution forward + backward ---------------------------------------------------------------------
class ConvCase:
    """One convolution layer: ``N x C x H x H`` input, ``K`` filters of ``KH x KH``, stride, padding, groups."""

    def __init__(self, name, N, C, K, H, KH, stride=1, padding=0, groups=1, bias=True):
        self.name, self.N, self.C, self.K, self.H, self.KH = name, N, C, K, H, KH
        self.stride, self.padding, self.groups, self.bias = stride, padding, groups, bias
        self.OH = (H + 2 * padding - KH) // stride + 1

    @property
    def macs(self):
        return self.N * self.K * self.OH * self.OH * (self.C // self.groups) * self.KH * self.KH

    @property
    def flops(self):
        """Forward + backward: three times the forward's 2 * MACs."""
        return 3 * 2 * self.macs

    def describe(self):
        g = f", groups={self.groups}" if self.groups > 1 else ""
        return (f"{self.KH}x{self.KH}/{self.stride}, N={self.N}, {self.C}->{self.K}, "
                f"{self.H}x{self.H}{g}")

    def build(self, impls, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.N, self.C, self.H, self.H), dtype=np.float32)
        w = rng.standard_normal((self.K, self.C // self.groups, self.KH, self.KH), dtype=np.float32) * 0.1
        b = rng.standard_normal(self.K, dtype=np.float32) if self.bias else None
        gy = rng.standard_normal((self.N, self.K, self.OH, self.OH), dtype=np.float32)
        out = {}
        for impl in impls:
            out[impl] = self._torch(x, w, b, gy) if impl == "torch" else _under(impl, self._tinyconv(x, w, b, gy))
        return out

    def _tinyconv(self, x, w, b, gy):
        tx, tw = tinyconv.tensor(x, requires_grad=True), tinyconv.tensor(w, requires_grad=True)
        tb = None if b is None else tinyconv.tensor(b, requires_grad=True)
        tgy = tinyconv.tensor(gy)

        def step():
            tx.grad = tw.grad = None
            if tb is not None:
                tb.grad = None
            F.conv2d(tx, tw, tb, self.stride, self.padding, groups=self.groups).backward(tgy)
        return step

    def _torch(self, x, w, b, gy):
        tx = torch.from_numpy(x).requires_grad_(True)
        tw = torch.from_numpy(w).requires_grad_(True)
        tb = None if b is None else torch.from_numpy(b).requires_grad_(True)
        tgy = torch.from_numpy(gy)

        def step():
            tx.grad = tw.grad = None
            if tb is not None:
                tb.grad = None
            torch.nn.functional.conv2d(tx, tw, tb, self.stride, self.padding, groups=self.groups).backward(tgy)
        return step


def conv_cases(scale="full"):
    """The layers of the suite's second table (``scale``: ``full``, ``quick`` or ``tiny`` for the smoke test)."""
    if scale == "tiny":
        return [ConvCase("AlexNet conv1 11x11/4", 1, 3, 4, 19, 11, 4, 2),
                ConvCase("VGG 3x3", 1, 4, 4, 6, 3, 1, 1),
                ConvCase("ResNet 3x3", 1, 4, 4, 6, 3, 1, 1, bias=False),
                ConvCase("ResNet 1x1", 1, 8, 4, 6, 1, bias=False),
                ConvCase("ResNeXt grouped 3x3", 1, 8, 8, 6, 3, 1, 1, groups=4, bias=False),
                ConvCase("MobileNetV2 depthwise 3x3", 1, 4, 4, 6, 3, 1, 1, groups=4, bias=False),
                ConvCase("LeNet C1 5x5", 2, 1, 6, 12, 5)]
    n = 2 if scale == "quick" else 8
    return [ConvCase("AlexNet conv1 11x11/4", n, 3, 96, 224, 11, 4, 2),
            ConvCase("VGG 3x3", n, 128, 128, 56, 3, 1, 1),
            ConvCase("ResNet 3x3", n, 64, 64, 56, 3, 1, 1, bias=False),
            ConvCase("ResNet 1x1", n, 256, 64, 56, 1, bias=False),
            ConvCase("ResNeXt grouped 3x3", n, 128, 128, 56, 3, 1, 1, groups=32, bias=False),
            ConvCase("MobileNetV2 depthwise 3x3", n, 144, 144, 56, 3, 1, 1, groups=144, bias=False),
            ConvCase("LeNet C1 5x5", 16 if scale == "quick" else 64, 1, 6, 32, 5)]


# -- training steps -------------------------------------------------------------------------------------
def tinyconv_model(name, num_classes=10):
    """``tinyconv.models.get_model(name, num_classes=10)``; None when that model is not registered (yet)."""
    if name not in tinyconv.models.list_models():
        return None
    tinyconv.manual_seed(0)
    return tinyconv.models.get_model(name, num_classes=num_classes)


def has_torch_model(name):
    """Whether PyTorch's twin of ``name`` can be built here (torch installed; torchvision for the big zoo rows)."""
    if torch is None:
        return False
    from . import torch_models
    return torch_models.has_model(name)


def loss_of(out, y, cross_entropy, aux_weight=0.3):
    """The cross-entropy of the logits; a tuple output (GoogLeNet in training mode: ``(logits, aux2, aux1)``,
    in both frameworks) adds its auxiliary classifiers' losses with weight 0.3 each, as the paper does."""
    if not isinstance(out, tuple):
        return cross_entropy(out, y)
    loss = cross_entropy(out[0], y)
    for aux in out[1:]:
        loss = loss + aux_weight * cross_entropy(aux, y)
    return loss


def _batch(batch, channels, size):
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, channels, size, size), dtype=np.float32), rng.integers(0, 10, batch)


def training_step(impl, name, batch, size, channels):
    """One SGD step (momentum 0.9, lr 0.01) on the cross-entropy of a random batch; returns (step, model)."""
    x, y = _batch(batch, channels, size)
    if impl == "torch":
        from . import torch_models
        torch.manual_seed(0)
        model = torch_models.get_model(name).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            opt.zero_grad()
            loss_of(model(tx), ty, torch.nn.functional.cross_entropy).backward()
            opt.step()
        return step, model
    model = tinyconv_model(name)
    model.train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = tinyconv.tensor(x), tinyconv.tensor(y)

    def step():
        opt.zero_grad()
        loss_of(model(tx), ty, F.cross_entropy).backward()
        opt.step()
    return _under(impl, step), model


def inference_step(impl, name, batch, size, channels=3, num_classes=1000):
    """One forward pass in evaluation mode without gradients (ImageNet's 1000 classes); returns (step, model)."""
    x, _ = _batch(batch, channels, size)
    if impl == "torch":
        from . import torch_models
        torch.manual_seed(0)
        model = torch_models.get_model(name, num_classes).eval()
        tx = torch.from_numpy(x)

        def step():
            with torch.no_grad():
                model(tx)
        return step, model
    model = tinyconv_model(name, num_classes)
    model.eval()
    tx = tinyconv.tensor(x)

    def step():
        with tinyconv.no_grad():
            model(tx)
    return _under(impl, step), model


def forward_macs(name, batch, size, channels=3):
    """Multiply-adds of one forward pass of tinyconv's ``name`` (``tinyconv.summary``, shapes only)."""
    return tinyconv.summary(tinyconv_model(name), (batch, channels, size, size)).total_macs


def num_parameters(model):
    """Parameter count (the same expression for a tinyconv and a PyTorch model)."""
    return sum(int(p.numel()) for p in model.parameters())


# -- GEMM ceiling ---------------------------------------------------------------------------------------
def gemm(impls, n):
    """``C = A @ B`` on float32 ``n x n`` matrices: NumPy's BLAS (the ceiling of im2col + GEMM) and PyTorch's."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = {"numpy": lambda: np.matmul(a, b)}
    if "torch" in impls:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch"] = lambda: torch.mm(ta, tb)
    return out
