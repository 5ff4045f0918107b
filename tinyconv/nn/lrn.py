"""``LocalResponseNorm``: AlexNet's cross-channel normalisation as a layer, PyTorch's convention."""
from ..functions import lrn as L
from . import checks
from .module import Module


class LocalResponseNorm(Module):
    """Local response normalisation across channels, see ``tinyconv.functional.local_response_norm``.

    ``y_c = x_c / (k + alpha/n * sum_{c' in window(c)} x_{c'}^2)^beta`` over ``n = size`` channels centred on c.
    PyTorch divides ``alpha`` by ``n``; the AlexNet paper (k=2, n=5, alpha=1e-4, beta=0.75) does not, so the
    paper's layer is ``LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)``.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        where = f"LocalResponseNorm({size!r})"
        self.size = checks.integer(where, "size", size)
        self.alpha = checks.real(where, "alpha", alpha)
        self.beta = checks.real(where, "beta", beta)
        self.k = checks.real(where, "k", k)

    def forward(self, x):
        checks.floating_input(self, x)
        return L._local_response_norm(x, self.size, self.alpha, self.beta, self.k, self)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
