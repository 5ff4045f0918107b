"""Which algorithm computes a convolution layer: chosen per layer by measured rules (``'auto'``), or by hand
for teaching, context-locally (``tinyconv.backend.conv_algorithm(name)``; default from ``TINYCONV_CONV_ALGO``):

- ``'naive'``: the loops of the definition (``naive.py``);
- ``'im2col'``: im2col + one GEMM per group (``conv2d.py``'s reference, chunked on the CPU);
- ``'winograd'``: Winograd F(2x2, 3x3) for 3x3 stride-1 ungrouped layers (``winograd.py``, ``winograd_cpu.py``,
  ``winograd_conv.py``);
- ``'winograd4'``: Winograd F(4x4, 3x3) for the same layers (``winograd4.py``, ``winograd4_cpu.py``, the same
  ``winograd_conv.py``): 4x fewer multiplications than the definition where F(2x2, 3x3) saves 2.25x, with
  larger transforms and a larger float32 error (``kernels/README.md``); ``'auto'`` takes it for wide layers with
  large planes (``WINOGRAD4_*`` below);
- ``'kn2row'``: for stride-1 ungrouped layers, the products on the output's side (``kn2row.py``): matrices of
  K*KH*KW rows instead of im2col's C*KH*KW; ``'auto'`` takes it for layers with at least twice as many maps in
  as out (``KN2ROW_MIN_NARROWING``), such as DenseNet's 3x3 layers;
- ``'direct'``: the direct kernels, no im2col (``depthwise.py``, ``grouped.py``; ``direct.py`` for ungrouped
  stride-1 layers);
- ``'auto'``: the rules of ``strategy`` below, each measured.

A hand-picked algorithm that cannot compute a layer raises ``ValueError`` naming the layer and the algorithm.
Under ``TINYCONV_KERNELS=numpy`` the pick runs that algorithm's NumPy reference; ``'auto'`` there is the
textbook im2col reference for every layer.
"""
import contextvars
import os

from . import kn2row, winograd_conv
from .direct import direct_suits

ALGORITHMS = ("auto", "naive", "im2col", "winograd", "winograd4", "kn2row", "direct")


def _from_env():
    name = os.environ.get("TINYCONV_CONV_ALGO", "auto").strip().lower() or "auto"
    if name not in ALGORITHMS:
        raise ValueError(f"TINYCONV_CONV_ALGO={name!r}: expected one of {', '.join(ALGORITHMS)}")
    return name


_requested = contextvars.ContextVar("tinyconv_conv_algorithm", default=_from_env())


def requested():
    """The algorithm asked for in this context (``'auto'`` unless picked by hand)."""
    return _requested.get()


def request(name):
    """Ask for algorithm ``name`` in this context; returns the token that ``restore`` takes."""
    if name not in ALGORITHMS:
        raise ValueError(f"conv_algorithm: unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}")
    return _requested.set(name)


def restore(token):
    _requested.reset(token)


# Grouped layers with at most this many taps per output (C/G*KH*KW) run the direct kernels on the CPU.
# Measured forward + backward, float32, N=8, 3x3, one thread (GFLOP/s, direct vs im2col + GEMM): Cg=4 at
# 56x56 21.7 vs 10.0; Cg=8 at 28x28 20.6 vs 19.2 (21.3 vs 19.1 with 16 groups), at 56x56 stride 2 13.4 vs
# 12.2; Cg=16 (144 taps) at 14x14 30.8 vs 23.3, at 28x28 28.2 vs 25.8; Cg=32 (288 taps) 12.7 vs 20.1 at 7x7
# and 28.3-33.2 vs 31.9-37.6 at 14x14 and 28x28: the per-group GEMM wins once it is that wide.
DIRECT_MAX_TAPS = 144
# Winograd F(2x2, 3x3) on the CPU for 3x3 stride-1 ungrouped layers with at least this many input and output
# channels and 2x2 output tiles in the batch (N * ceil(OH/2) * ceil(OW/2)): below, the filter transforms
# (K*C of them, forward and backward), the tile transforms' memory passes and the cropped tiles cost more than
# the 2.25x fewer multiplications save.  Measured forward + backward (dx, dW), float32, interleaved (ms,
# Winograd vs im2col + GEMM).  Two threads, quiet machine: N=4 64->128 at 32x32 (1024 tiles) 32.6 vs 37.6;
# N=16 64->64 at 16x16 (1024) 22.4 vs 24.7; but N=16 128->128 at 8x8 (256 tiles) 23.5 vs 22.5, N=4 256->256 at
# 16x16 (256) 78.7 vs 64.1, N=4 512->512 at 8x8 (64) 226 vs 75, N=16 256->256 at 4x4 (64) 52.4 vs 22.1.  One
# thread, loaded machine: N=8 128->128 at 56x56 (6272 tiles) 795 vs 1432; 64->64 at 56x56 261 vs 401, at 28x28
# (1568) 75 vs 107; 128->128 at 28x28 222 vs 359; 256->256 at 14x14 (392) 199 vs 265; 32->32 at 32x32 even,
# 16->16 27 vs 20 (benchmarks/PROFILES.md).
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_TILES = 1024
# Of those layers, Winograd F(4x4, 3x3) takes the ones with outputs at least 28x28 and min(C, K) * min(OH, OW)
# at least 3584 (64 channels at 56x56, 128 at 28x28): 36 products per 16 outputs instead of 16 per 4, but
# smaller planes give the transforms' vector loops too few tiles, and the cropped tiles waste more.  Measured
# forward + backward (dx, dW), float32, two threads, alternating in one process, medians of 11 (ms, F(4x4, 3x3)
# vs F(2x2, 3x3) vs im2col + GEMM), over four to five runs: N=8 64->64 at 56x56 31.9-39.2 vs 36.3-42.2 vs
# 41.9-44.4 (a loaded run 50 vs 69 vs 70); N=8 128->128 at 56x56 82-146 vs 106-169 vs 142-190; N=4 128->128 at
# 32x32 20.0-22.2 vs 24.9-29.9 vs 26.9-32.2; N=8 128->128 at 28x28 33.2, 39.9 vs 39.2, 46.1 vs 40.5, 46.9.  Not:
# N=8 64->64 at 28x28 15.3, 15.0 vs 19.1, 16.9 vs im2col 15.0, 14.8 (even); N=16 64->64 at 16x16 12.4-14.4 vs
# 12.5-14.6 vs 13.1-17.8 (even); N=32 64->64 at 16x16 36.4, 32.6 vs 30.9, 25.2 vs 29.7, 27.9; N=16 256->256 at
# 14x14 79.7, 94.2 vs 73.5, 101.2 vs 83.6, 98.9 (mixed).  F(4x4, 3x3)'s float32 error is ~20x F(2x2, 3x3)'s,
# about 1e-5 of the output's scale (kernels/README.md).
WINOGRAD4_MIN_SIDE = 28
WINOGRAD4_MIN_CHANNELS_X_SIDE = 3584
# Layers that Winograd does not take, with at least KN2ROW_MIN_NARROWING times as many input maps as output
# maps (and a window larger than 1x1), run kn2row on the CPU: its matrices have K*KH*KW rows instead of
# C*KH*KW.  Measured forward + backward (dx, dW), float32, two threads, alternating in one process, medians of
# 9 (ms, im2col + GEMM vs kn2row): DenseNet's 3x3 layers, N=16 128->32 at 16x16 12.4 vs 7.9, 8x8 4.67 vs 2.59,
# 4x4 1.56 vs 1.09, 2x2 0.79 vs 0.58; 256->64 at 8x8 9.52 vs 6.21; 128->64 at 8x8 5.66 vs 4.37; 64->32 at
# 16x16 6.65 vs 5.31; N=8 256->128 at 14x14 22.0 vs 18.4; 96->48 5x5 at 8x8 10.9 vs 7.4.  Not with as many
# maps out as in: 128->128 at 8x8 6.94 vs 7.07, 256->256 at 4x4 7.10 vs 8.18, 512->512 at 2x2 11.2 vs 17.9,
# 64->64 at 16x16 11.0 vs 11.2; nor with more: 32->64 at 16x16 5.35 vs 6.43, 48->64 7.74 vs 8.21.  Against
# Winograd (which keeps its layers): N=8 128->64 at 56x56 59.7 (F(4x4, 3x3)) vs 73.4, N=16 128->64 at 16x16
# 24.7 (F(2x2, 3x3)) vs 26.9, but N=4 256->64 at 32x32 39.4 vs 32.3.
KN2ROW_MIN_NARROWING = 2


def strategy(x_shape, w_shape, G, padding, out_size, device, stride=(1, 1), dilation=(1, 1)):
    """How ``conv2d_forward_<device>`` computes a layer (``device``: 'cpu' or 'cuda'): ``'depthwise'`` (direct
    kernel, G == C > 1), ``'grouped'`` (direct kernels, CPU, 1 < G < C, at most ``DIRECT_MAX_TAPS`` taps),
    ``'winograd'`` (F(2x2, 3x3)), ``'winograd4'`` (F(4x4, 3x3)), ``'kn2row'``, ``'naive'``, ``'dense'`` (one
    window covers the whole unpadded image: a fully connected layer), ``'direct'`` (CPU, few-channel ungrouped
    layers at stride 1: ``direct.direct_suits``, measured there) or ``'gemm'`` (im2col + GEMM, per chunk of
    images); by the rules, or as picked by hand."""
    C, (K, Cg, KH, KW) = x_shape[1], w_shape
    picked = requested()
    if picked == "naive":
        return "naive"
    if picked == "im2col":
        return "gemm"
    if picked in ("winograd", "winograd4"):
        if not winograd_conv.applies(w_shape, G, stride, dilation):
            raise ValueError(_cannot(picked, "a 3x3 kernel, stride 1, dilation 1 and groups=1", x_shape,
                                     w_shape, G, stride, dilation))
        return picked
    if picked == "kn2row":
        if not kn2row.applies(x_shape, w_shape, G, stride, dilation, padding):
            raise ValueError(_cannot(picked, "stride 1, dilation 1, groups=1 and padding at most the kernel's size "
                                     "less one", x_shape, w_shape, G, stride, dilation, padding))
        return picked
    if picked == "direct":
        if G == C > 1:
            return "depthwise"
        if 1 < G < C:
            return "grouped"
        if G == 1 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and device == "cpu":
            return "direct"
        raise ValueError(_cannot("direct", "a grouped layer, or on the CPU an ungrouped one with stride 1 and "
                                 "dilation 1", x_shape, w_shape, G, stride, dilation))
    if G == C > 1:
        return "depthwise"
    if device == "cpu" and 1 < G < C and Cg * KH * KW <= DIRECT_MAX_TAPS:
        return "grouped"
    if tuple(out_size) == (1, 1) and tuple(padding) == (0, 0) and (KH, KW) == tuple(x_shape[2:]):
        return "dense"
    if device == "cpu" and direct_suits(x_shape, w_shape, G, stride, dilation):
        return "direct"
    if (device == "cpu" and winograd_conv.applies(w_shape, G, stride, dilation)
            and min(C, K) >= WINOGRAD_MIN_CHANNELS
            and x_shape[0] * -(-out_size[0] // 2) * -(-out_size[1] // 2) >= WINOGRAD_MIN_TILES):
        side = min(out_size)
        if side >= WINOGRAD4_MIN_SIDE and min(C, K) * side >= WINOGRAD4_MIN_CHANNELS_X_SIDE:
            return "winograd4"
        return "winograd"
    if (device == "cpu" and C >= KN2ROW_MIN_NARROWING * K and KH * KW > 1
            and kn2row.applies(x_shape, w_shape, G, stride, dilation, padding)):
        return "kn2row"
    return "gemm"


def _cannot(algorithm, needs, x_shape, w_shape, G, stride, dilation, padding=None):
    return (f"conv2d: conv_algorithm('{algorithm}') needs {needs}; this layer has input {tuple(x_shape)}, "
            f"weight {tuple(w_shape)}, groups={G}, stride={tuple(stride)}, dilation={tuple(dilation)}"
            + ("" if padding is None else f", padding={tuple(padding)}"))
