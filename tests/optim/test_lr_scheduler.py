"""LR schedulers: learning-rate sequences equal PyTorch's; state dicts resume the sequence."""
import json

import numpy as np
import pytest

from tinyconv import optim
from tinyconv.nn import Parameter
from tinyconv.optim import lr_scheduler

LRS = (0.1, 0.03)


def _warmup_factor(epoch):
    return min(1.0, (epoch + 1) / 4)


# (name, kwargs) pairs; "sub" entries build the children of SequentialLR.
CASES = [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=2, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7)),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=1e-3)),
    ("LambdaLR", dict(lr_lambda=_warmup_factor)),
    ("LinearLR", dict()),
    ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=4)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=6)),
    ("SequentialLR", dict(sub=[("LinearLR", dict(start_factor=0.1, total_iters=3)),
                               ("CosineAnnealingLR", dict(T_max=8))], milestones=[3])),
    ("SequentialLR", dict(sub=[("ExponentialLR", dict(gamma=0.5)), ("StepLR", dict(step_size=2)),
                               ("MultiStepLR", dict(milestones=[1, 3]))], milestones=[2, 6])),
]


def _case_id(case):
    return f"{case[0]}-{case[1]}"


def _build(module, opt, name, kw):
    if name == "SequentialLR":
        subs = [getattr(module, n)(opt, **k) for n, k in kw["sub"]]
        return module.SequentialLR(opt, subs, milestones=kw["milestones"])
    return getattr(module, name)(opt, **kw)


def _ours(name, kw):
    params = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    opt = optim.SGD([{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}], lr=1.0,
                    momentum=0.9)
    return opt, _build(lr_scheduler, opt, name, kw)


def _theirs(torch, name, kw):
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}],
                          lr=1.0, momentum=0.9)
    return opt, _build(torch.optim.lr_scheduler, opt, name, kw)


def _sequence(opt, sched, steps):
    seq = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append(sched.get_last_lr())
        assert seq[-1] == [g["lr"] for g in opt.param_groups]
    return seq


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_lr_sequence_matches_torch(torch, case):
    name, kw = case
    ours = _sequence(*_ours(name, kw), 20)
    theirs = _sequence(*_theirs(torch, name, kw), 20)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_state_dict_resumes_the_sequence(case):
    name, kw = case
    full = _sequence(*_ours(name, kw), 16)
    opt, sched = _ours(name, kw)
    _sequence(opt, sched, 7)
    opt_sd, sched_sd = opt.state_dict(), sched.state_dict()
    if name != "LambdaLR":  # plain Python values: survives JSON (what a checkpoint writer may use)
        sched_sd = json.loads(json.dumps(sched_sd))
    # PyTorch's documented order: build optimizer and scheduler, then load the optimizer, then the scheduler.
    opt2, sched2 = _ours(name, kw)
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    resumed = _sequence(opt2, sched2, 9)
    np.testing.assert_allclose(np.array(resumed), np.array(full[7:]), rtol=1e-13)


@pytest.mark.parametrize("case", [("CosineAnnealingLR", dict(T_max=10)), ("StepLR", dict(step_size=3)),
                                  ("ExponentialLR", dict(gamma=0.8)), ("MultiStepLR", dict(milestones=[6])),
                                  ("LinearLR", dict(start_factor=0.2, total_iters=8))], ids=_case_id)
def test_construction_with_last_epoch_matches_torch(torch, case):
    """Resuming the old way, by passing last_epoch (needs group["initial_lr"]), follows PyTorch too."""
    name, kw = case
    seqs = []
    for module, (opt, _) in ((lr_scheduler, _ours("StepLR", dict(step_size=100))),
                             (torch.optim.lr_scheduler, _theirs(torch, "StepLR", dict(step_size=100)))):
        for group in opt.param_groups:
            group["lr"] *= 0.5
        seqs.append(_sequence(opt, getattr(module, name)(opt, last_epoch=4, **kw), 10))
    np.testing.assert_allclose(np.array(seqs[0]), np.array(seqs[1]), rtol=1e-13)


PLATEAU_CASES = [dict(), dict(mode="max", factor=0.5, patience=1, threshold=0.05),
                 dict(patience=2, cooldown=2, threshold_mode="abs", threshold=0.1, min_lr=[0.02, 0.0]),
                 dict(mode="max", patience=0, threshold_mode="abs", min_lr=1e-3, factor=0.2)]


@pytest.mark.parametrize("kw", PLATEAU_CASES, ids=str)
def test_reduce_on_plateau_matches_torch(torch, kw):
    rng = np.random.default_rng(0)
    # a noisy metric that improves, stalls, and improves again
    metrics = np.concatenate([np.linspace(2, 1, 8), np.full(20, 1.0), np.linspace(1, 0.5, 8)])
    metrics = metrics + 0.05 * rng.standard_normal(metrics.size)
    seqs = []
    for module, (opt, _) in ((lr_scheduler, _ours("StepLR", dict(step_size=100))),
                             (torch.optim.lr_scheduler, _theirs(torch, "StepLR", dict(step_size=100)))):
        sched = module.ReduceLROnPlateau(opt, **kw)
        seq = []
        for m in metrics:
            opt.step()
            sched.step(float(m))
            seq.append(sched.get_last_lr())
        seqs.append(seq)
    np.testing.assert_allclose(np.array(seqs[0]), np.array(seqs[1]), rtol=1e-13)
    assert seqs[0][-1] != seqs[0][0]  # the case does reduce the lr


def test_reduce_on_plateau_state_dict_resumes():
    opt, _ = _ours("StepLR", dict(step_size=100))
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    for m in (1.0, 0.9, 0.95, 0.97):
        sched.step(m)
    sd = json.loads(json.dumps(sched.state_dict()))
    assert sd["best"] == 0.9 and sd["num_bad_epochs"] == 0 and sched.get_last_lr() == pytest.approx([0.01, 0.003])
    opt2, _ = _ours("StepLR", dict(step_size=100))
    opt2.load_state_dict(opt.state_dict())
    sched2 = lr_scheduler.ReduceLROnPlateau(opt2, patience=1)
    sched2.load_state_dict(sd)
    for s in (sched, sched2):
        s.step(0.99)
        s.step(0.99)
    assert sched2.get_last_lr() == sched.get_last_lr() == pytest.approx([0.001, 0.0003])


def test_lambda_functions_are_not_saved_but_callable_objects_are():
    class Factor:
        def __init__(self, base):
            self.base = base

        def __call__(self, epoch):
            return self.base ** epoch

    opt, _ = _ours("StepLR", dict(step_size=1))
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 1.0, Factor(0.5)])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [None, {"base": 0.5}]
    sd["lr_lambdas"][1]["base"] = 0.25
    sched.load_state_dict(sd)
    opt.step()
    sched.step()
    assert sched.get_last_lr() == pytest.approx([LRS[0], LRS[1] * 0.25])


def test_initial_lr_recorded_and_errors():
    opt, sched = _ours("ExponentialLR", dict(gamma=0.5))
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS)
    assert sched.base_lrs == list(LRS) and sched.last_epoch == 0
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=1)
    opt3 = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt3, step_size=1, last_epoch=4)
    with pytest.raises(ValueError, match="milestone"):
        lr_scheduler.SequentialLR(opt, [sched, lr_scheduler.StepLR(opt, 2)], milestones=[])
    with pytest.raises(ValueError, match="start_factor"):
        lr_scheduler.LinearLR(opt, start_factor=0)
