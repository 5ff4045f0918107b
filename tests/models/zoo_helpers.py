"""Helpers shared by the model-zoo tests (``test_zoo_*.py``): the reference table, torchvision's state-dict
fixtures, cheap construction, and the forward / training checks every zoo model goes through."""
import csv
import json
import pathlib

import numpy as np

import tinyconv
import tinyconv.functional as F
from tinyconv import models
from tinyconv.nn.init import skip_init

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
REFERENCE = {row["model"].split()[0]: row
             for row in csv.DictReader(open(FIXTURES / "zoo_reference.tsv"), delimiter="\t")}


def count(model):
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def build(name, **kw):
    """The registered model with its weights left unfilled: cheap, for counting and shapes."""
    with skip_init():
        return models.get_model(name, **kw)


def torchvision_keys(fixture):
    """torchvision's state-dict keys in order, each with its shape (``tests/fixtures/torchvision_keys/``)."""
    return json.loads((FIXTURES / "torchvision_keys" / f"{fixture}.json").read_text())


def state_dict_shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def reference_macs(model, ref_name, channels=3):
    """(tinyconv's MACs, the reference table's MACs) at the reference row's input size."""
    row = REFERENCE[ref_name]
    size = int(row["input"])
    return tinyconv.summary(model, (channels, size, size), depth=1).total_macs, float(row["GMACs"]) * 1e9


def check_forward(model, x, num_classes=10):
    """Evaluation-mode forward: ``(N, num_classes)``, finite, and the classes get different scores."""
    model.eval()
    with tinyconv.no_grad():
        y = model(x).numpy()
    assert y.shape == (x.shape[0], num_classes)
    assert np.isfinite(y).all()
    assert np.ptp(y, axis=1).min() > 0
    return y


def check_training(model, x, steps=3, lr=0.01, momentum=0.0):
    """A few plain SGD steps on one batch (targets 3 and 7, ...) must lower the cross-entropy."""
    model.train()
    target = tinyconv.tensor(np.arange(x.shape[0]) * 4 % 10 + 3)
    opt = tinyconv.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
    return losses
