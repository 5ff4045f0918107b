"""optimizer.step() writes the parameters in place, so it bumps their version counters: back-propagating
again through a graph built with the old weights raises (as in PyTorch) instead of mixing old activations
with new weights."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn, optim
from tinyconv import functional as F

OPTIMIZERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1),
    "SGD-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "Adam": lambda ps: optim.Adam(ps, lr=0.01),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.01),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.01),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.01),
    "Adadelta": lambda ps: optim.Adadelta(ps),
}


def test_every_optimizer_is_covered():
    classes = {n for n, c in vars(optim).items() if isinstance(c, type) and issubclass(c, optim.Optimizer)}
    assert classes - {"Optimizer"} == {name.split("-")[0] for name in OPTIMIZERS}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("make_model", [lambda: nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)),
                                        lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten())],
                         ids=["linear", "conv"])
def test_backward_through_a_graph_older_than_the_step_raises(name, make_model):
    model = make_model()
    opt = OPTIMIZERS[name](model.parameters())
    x = tc.randn(2, 4) if isinstance(model[0], nn.Linear) else tc.randn(2, 2, 5, 5)
    loss = (model(x) ** 2).sum()
    loss.backward(retain_graph=True)
    before = [p._version for p in model.parameters()]
    opt.step()
    assert all(p._version > v for p, v in zip(model.parameters(), before))
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()


@pytest.mark.torch
def test_torch_raises_there_too(torch):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = (net(torch.randn(2, 4)) ** 2).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_fresh_forward_after_the_step_is_fine_and_parameters_without_grad_keep_their_version():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[1].weight.requires_grad = False
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(model(tc.randn(5, 4)), tc.zeros(5, 2)).backward()
        opt.step()
    assert model[1].weight._version == 0 and model[0].weight._version == 3
    assert np.isfinite(model[0].weight.numpy()).all()
