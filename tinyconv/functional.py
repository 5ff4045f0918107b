"""``tinyconv.functional`` (import as ``F``): every differentiable operation as a plain function."""
from .functions import *  # noqa: F401,F403
