"""Local response normalisation across channels (AlexNet's "brightness normalisation"), PyTorch's convention.

Shapes: N batch, C channels, then any spatial axes (H, W for images), flattened to M inside the op.

For channel c with window W(c) = [c - n//2, c + (n-1)//2] clipped to the existing channels (n = ``size``;
PyTorch pads n//2 zero channels before and (n-1)//2 after, so an even n leans forward):

    scale_c = k + alpha/n * sum_{c' in W(c)} x_{c'}^2          y_c = x_c / scale_c^beta

Backward.  y_c depends on x_j directly when c = j, and through scale_c for every c whose window holds j,
which is the mirrored window W'(j) = [j - (n-1)//2, j + n//2]; d scale_c / d x_j = 2 alpha/n x_j, so

    dL/dx_j = dy_j scale_j^(-beta)  +  sum_{c in W'(j)} dy_c x_c (-beta) scale_c^(-beta-1) (2 alpha/n) x_j
            = dy_j scale_j^(-beta)  -  (2 alpha beta / n) x_j sum_{c in W'(j)} dy_c x_c scale_c^(-beta-1)

The second term is the cross-channel one: a channel's gradient also collects what its neighbours' outputs
lost by its energy.  Both directions run on the kernels of ``kernels/lrn.py``.
"""
from ..backend import get_array_module, get_kernel
from ..core import Function


class LocalResponseNormFn(Function):
    """LRN over axis 1; saves the input and ``scale`` (not the output) for backward."""

    def forward(self, x):
        xp = get_array_module(x)
        self.in_shape = x.shape
        self.x = xp.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)   # (N, C, M)
        y, self.scale = get_kernel("lrn_forward", x)(self.x, self.size, self.alpha, self.beta, self.k)
        return y.reshape(x.shape)

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = xp.ascontiguousarray(gy).reshape(self.x.shape)
        # dx_j = dy_j scale_j^-beta - (2 alpha beta / n) x_j sum_{c in W'(j)} dy_c x_c scale_c^(-beta-1)
        gx = get_kernel("lrn_backward", gy)(self.x, self.scale, gy, self.size, self.alpha, self.beta)
        return gx.reshape(self.in_shape)


def _local_response_norm(input, size, alpha, beta, k, layer):
    op = layer if layer is not None else "local_response_norm"
    if input.ndim < 3:
        raise ValueError(f"{op}: expected input of 3 or more dimensions (N, C, ...), got shape {input.shape}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got dtype {input.dtype}")
    if int(size) != size or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    return LocalResponseNormFn.apply(input, size=int(size), alpha=float(alpha), beta=float(beta), k=float(k))


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (PyTorch's ``F.local_response_norm``).

    input (N, C, ...) with 3 or more dimensions (axis 1 is the channel axis) -> same shape:

        y_c = x_c / (k + alpha/n * sum_{c' in W(c)} x_{c'}^2)^beta,   W(c) = [c - n//2, c + (n-1)//2],  n = size

    Note the convention: PyTorch (and Caffe) divide ``alpha`` by the window size ``n``; the AlexNet paper
    (Krizhevsky et al. 2012, section 3.3: k=2, n=5, alpha=1e-4, beta=0.75) does not.  For the paper's
    layer pass ``alpha = 1e-4 * n``::

        local_response_norm(x, size=5, alpha=5e-4, beta=0.75, k=2.0)
    """
    return _local_response_norm(input, size, alpha, beta, k, None)
