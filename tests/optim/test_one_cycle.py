"""OneCycleLR: the learning rates and momenta of every step equal PyTorch's."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import optim
from tinyconv.optim.lr_scheduler import OneCycleLR

CASES = [
    dict(max_lr=0.1, total_steps=20),
    dict(max_lr=0.1, epochs=3, steps_per_epoch=7, anneal_strategy="linear"),
    dict(max_lr=0.5, total_steps=25, three_phase=True),
    dict(max_lr=0.5, total_steps=25, three_phase=True, anneal_strategy="linear", pct_start=0.4),
    dict(max_lr=0.2, total_steps=10, cycle_momentum=False, div_factor=10, final_div_factor=100),
    dict(max_lr=0.3, total_steps=16, base_momentum=0.8, max_momentum=0.9),
]


def _schedule(lib, make_opt, kw):
    opt = make_opt(lib)
    sched = (lib.optim.lr_scheduler.OneCycleLR if lib is not tc else OneCycleLR)(opt, **kw)
    total = kw.get("total_steps") or kw["epochs"] * kw["steps_per_epoch"]
    rows = []
    for _ in range(total):
        g = opt.param_groups[0]
        rows.append((g["lr"], g["betas"][0] if "betas" in g else g.get("momentum", 0.0)))
        opt.step()
        sched.step()
    return np.array(rows)


def _sgd(lib):
    return lib.optim.SGD([lib.zeros(2, requires_grad=True)], lr=0.01, momentum=0.9)


def _adam(lib):
    return lib.optim.Adam([lib.zeros(2, requires_grad=True)], lr=0.01)


@pytest.mark.parametrize("make_opt", [_sgd, _adam], ids=["sgd", "adam"])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_one_cycle_matches_torch(torch, kw, make_opt):
    ours = _schedule(tc, make_opt, kw)
    theirs = _schedule(torch, make_opt, kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_one_cycle_shape_without_torch():
    opt = optim.SGD([tc.zeros(2, requires_grad=True)], lr=1.0, momentum=0.9)
    sched = OneCycleLR(opt, max_lr=1.0, total_steps=100)
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        sched.step()
    assert lrs[0] == pytest.approx(1.0 / 25) and max(lrs) == pytest.approx(1.0) and np.argmax(lrs) == 29
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4, rel=1e-2)
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85) and np.argmin(moms) == 29
    with pytest.raises(ValueError, match="tried to step 101 times"):
        sched.step()
        sched.step()


def test_one_cycle_refuses_bad_arguments():
    opt = optim.SGD([tc.zeros(2, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="total_steps, or both epochs and steps_per_epoch"):
        OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="anneal_strategy"):
        OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="cosine")
    with pytest.raises(ValueError, match="needs an optimizer with momentum or betas"):
        OneCycleLR(optim.Adagrad([tc.zeros(2, requires_grad=True)]), max_lr=1.0, total_steps=10)


@pytest.mark.parametrize("T_0,T_mult,eta_min", [(5, 1, 0.0), (3, 2, 0.001), (4, 3, 0.01)])
def test_cosine_warm_restarts_matches_torch(torch, T_0, T_mult, eta_min):
    from tinyconv.optim.lr_scheduler import CosineAnnealingWarmRestarts
    runs = []
    for lib, cls in ((tc, CosineAnnealingWarmRestarts), (torch, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)):
        opt = lib.optim.SGD([lib.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
        sched = cls(opt, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
        lrs = []
        for epoch in range(30):  # one step per epoch
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        for i in range(12):  # per batch: fractional epochs, as PyTorch's docs show
            sched.step(30 + i / 4)
            lrs.append(opt.param_groups[0]["lr"])
        runs.append(lrs)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12, atol=1e-15)
