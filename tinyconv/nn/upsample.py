"""``Upsample``: ``functional.interpolate`` as a layer."""
from .. import functional as F
from .module import Module


class Upsample(Module):
    """Resize (N, C, H, W) images to ``size`` or by ``scale_factor`` with ``mode`` 'nearest' or 'bilinear'."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode='{self.mode}'"
