"""``tinyconv.utils.data``: the names of ``torch.utils.data``, which tinyconv keeps in ``tinyconv.data``."""
from ..data import DataLoader, Dataset, Subset, TensorDataset, random_split  # noqa: F401
