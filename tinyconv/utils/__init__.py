"""``tinyconv.utils``: PyTorch's ``torch.utils`` spellings (``from tinyconv.utils.data import DataLoader``)."""
from . import data  # noqa: F401
