"""``Upsample``: ``functional.interpolate`` as a layer."""
from .. import functional as F
from . import checks
from .module import Module


class Upsample(Module):
    """Resize (N, C, H, W) images to ``size`` or by ``scale_factor`` with ``mode`` 'nearest' or 'bilinear'."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.scale_factor, self.align_corners = size, scale_factor, align_corners
        self.mode = checks.choice("Upsample", "mode", mode, ("nearest", "bilinear"))

    def forward(self, input):
        where = f"Upsample({self.extra_repr()})"
        checks.floating_input(where, input)
        try:
            return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode='{self.mode}'"
