"""``tinyconv.nn.functional``: the same functions as ``tinyconv.functional`` (``import tinyconv.nn.functional as F``
works as in PyTorch)."""
from ..functional import *  # noqa: F401,F403
