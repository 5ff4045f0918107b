"""Optimizers: trajectories equal PyTorch's given the same gradients; groups, zero_grad, state dicts."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import checkpoint, optim
from tinyconv.nn import Parameter

SHAPES = [(3, 4), (5,), (2, 1, 3)]

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.05)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=1e-3, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.9)),
    ("RMSprop", dict(lr=1e-3, centered=True)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=1e-2)),
    ("Adam", dict()),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=1e-2, betas=(0.5, 0.9), weight_decay=0.5, amsgrad=True)),
]


def _case_id(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


def _init_values(rng):
    return [rng.standard_normal(s) for s in SHAPES]


def _grads(rng, steps):
    # A few gradients are missing (None) at some steps: those parameters must be left alone.
    return [[None if (t + i) % 5 == 4 else rng.standard_normal(s) for i, s in enumerate(SHAPES)]
            for t in range(steps)]


def _run_tinyconv(name, kw, init, grads, dtype=np.float64):
    params = [Parameter(v.astype(dtype)) for v in init]
    opt = getattr(optim, name)(params, **kw)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else tc.Tensor(g.astype(dtype))
        opt.step()
        history.append([p.numpy().copy() for p in params])
    return history, opt, params


def _run_torch(torch, name, kw, init, grads):
    params = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in init]
    opt = getattr(torch.optim, name)(params, foreach=False, **kw)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else torch.tensor(g, dtype=torch.float64)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_trajectory_matches_torch(torch, case):
    name, kw = case
    rng = np.random.default_rng(1)
    init, grads = _init_values(rng), _grads(rng, 12)
    ours, _, _ = _run_tinyconv(name, kw, init, grads)
    theirs = _run_torch(torch, name, kw, init, grads)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14, err_msg=f"{name} {kw} step {t} param {i}")


@pytest.mark.parametrize("case", CASES[::3], ids=_case_id)
def test_float32_stays_float32_in_place(case):
    name, kw = case
    rng = np.random.default_rng(2)
    init, grads = _init_values(rng), _grads(rng, 3)
    params = [Parameter(v.astype(np.float32)) for v in init]
    arrays = [p.data for p in params]
    opt = getattr(optim, name)(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else tc.Tensor(g.astype(np.float32))
        opt.step()
    for p, a in zip(params, arrays):
        assert p.data is a and p.dtype == np.float32
        assert not p.requires_grad or p.is_leaf
    for s in opt.state.values():
        for v in s.values():
            assert not hasattr(v, "dtype") or v.dtype == np.float32
    # the float32 trajectory stays near the float64 one
    ref, _, _ = _run_tinyconv(name, kw, init, grads)
    for p, r in zip(params, ref[-1]):
        np.testing.assert_allclose(p.numpy(), r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_equals_textbook_velocity_form(nesterov):
    """v <- mu v - lr g; p <- p + v (Nesterov: p <- p + mu v - lr g) is the same trajectory for constant lr."""
    rng = np.random.default_rng(6)
    init, grads = _init_values(rng), _grads(rng, 8)
    grads = [[g if g is not None else np.zeros(s) for g, s in zip(step, SHAPES)] for step in grads]
    ours, _, _ = _run_tinyconv("SGD", dict(lr=0.1, momentum=0.9, nesterov=nesterov), init, grads)
    p, v = [x.copy() for x in init], [np.zeros(s) for s in SHAPES]
    for t, step in enumerate(grads):
        for i, g in enumerate(step):
            v[i] = 0.9 * v[i] - 0.1 * g
            p[i] += 0.9 * v[i] - 0.1 * g if nesterov else v[i]
            np.testing.assert_allclose(ours[t][i], p[i], rtol=1e-10, atol=1e-12)


def test_params_without_grad_are_skipped():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = tc.Tensor(np.ones(3))
    opt.step()
    assert np.all(b.numpy() == 1) and np.all(a.numpy() < 1)
    assert b not in opt.state and opt.state[a]["step"] == 1


def test_param_groups_defaults_and_per_group_hyperparameters(torch):
    rng = np.random.default_rng(3)
    init, grads = _init_values(rng), _grads(rng, 6)
    params = [Parameter(v.copy()) for v in init]
    opt = optim.SGD([{"params": params[:2]}, {"params": [params[2]], "lr": 0.5, "nesterov": True}],
                    lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["nesterov"] is False and opt.param_groups[1]["momentum"] == 0.9
    tparams = [torch.nn.Parameter(torch.tensor(v)) for v in init]
    topt = torch.optim.SGD([{"params": tparams[:2]}, {"params": [tparams[2]], "lr": 0.5, "nesterov": True}],
                           lr=0.1, momentum=0.9, foreach=False)
    for step_grads in grads:
        for p, tp, g in zip(params, tparams, step_grads):
            p.grad = None if g is None else tc.Tensor(g)
            tp.grad = None if g is None else torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12)


def test_add_param_group_and_errors():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    opt = optim.Adam([a], lr=1e-2)
    opt.add_param_group({"params": b, "betas": (0.5, 0.6)})
    assert opt.param_groups[1]["lr"] == 1e-2 and opt.param_groups[1]["betas"] == (0.5, 0.6)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([a], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a * 2], lr=0.1)


def test_defaults_and_argument_order_match_torch(torch):
    import inspect
    for name in ("SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        implementation_flags = ("foreach", "maximize", "capturable", "differentiable", "fused")
        positional = [k for k, v in theirs.items() if v.kind is v.POSITIONAL_OR_KEYWORD
                      and k not in implementation_flags]
        assert [k for k, v in ours.items() if v.kind is v.POSITIONAL_OR_KEYWORD] == positional, name
        for k in positional[1:]:
            assert ours[k].default == theirs[k].default, (name, k)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none):
    a = Parameter(np.ones(3))
    a.grad = tc.Tensor(np.full(3, 2.0))
    opt = optim.SGD([a], lr=0.1)
    opt.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert a.grad is None
    else:
        assert np.all(a.grad.numpy() == 0)


def test_step_with_closure_returns_loss_and_trains():
    w = Parameter(np.array([3.0, -2.0]))
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(50):
        last = opt.step(closure).item()
    assert first == 13.0 and last < 1e-8


@pytest.mark.parametrize("case", [c for c in CASES if c[1]], ids=_case_id)
def test_state_dict_resume_equals_uninterrupted_run(case, tmp_path):
    name, kw = case
    rng = np.random.default_rng(4)
    init, grads = _init_values(rng), _grads(rng, 8)
    full, _, _ = _run_tinyconv(name, kw, init, grads)
    _, opt, params = _run_tinyconv(name, kw, init, grads[:5])
    sd = opt.state_dict()
    # through an .npz checkpoint file
    checkpoint.save(tmp_path / "opt.npz", {"optimizer": sd})
    loaded = checkpoint.load(tmp_path / "opt.npz")["optimizer"]
    assert sorted(loaded["state"]) == sorted(sd["state"])
    params2 = [Parameter(p.numpy().copy()) for p in params]
    opt2 = getattr(optim, name)(params2, lr=123.0)
    opt2.load_state_dict(loaded)
    assert opt2.param_groups[0]["lr"] == kw.get("lr", opt.defaults["lr"])
    for step_grads in grads[5:]:
        for p, g in zip(params2, step_grads):
            p.grad = None if g is None else tc.Tensor(g)
        opt2.step()
    for p, ref in zip(params2, full[-1]):
        np.testing.assert_allclose(p.numpy(), ref, rtol=1e-14, atol=1e-15)


def test_state_dict_structure_and_copying_on_load():
    a, b, c = (Parameter(np.ones(s, np.float32)) for s in [(2,), (3,), (4,)])
    opt = optim.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.1}], amsgrad=True)
    for p in (a, c):
        p.grad = tc.Tensor(np.ones(p.shape, np.float32))
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 2]
    assert sd["state"][0]["step"] == 1 and isinstance(sd["state"][0]["step"], int)
    assert set(sd["state"][2]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    # float64 saved arrays are cast to the parameter dtype and copied, keys may be strings
    sd64 = {"state": {str(k): {n: (v.astype(np.float64) if n != "step" else np.asarray(v)) for n, v in s.items()}
                      for k, s in sd["state"].items()},
            "param_groups": sd["param_groups"]}
    opt2 = optim.Adam([{"params": [a, b]}, {"params": [c]}], amsgrad=True)
    opt2.load_state_dict(sd64)
    assert opt2.state[c]["exp_avg"].dtype == np.float32 and opt2.state[c]["step"] == 1
    assert opt2.state[c]["exp_avg"] is not opt.state[c]["exp_avg"]
    assert opt2.param_groups[1]["lr"] == 0.1 and opt2.param_groups[1]["params"][0] is c
    with pytest.raises(ValueError, match="parameter group"):
        optim.Adam([a, b, c]).load_state_dict(sd)


def test_state_dict_loads_into_torch_layout(torch):
    """Our state dict, with arrays turned into tensors, resumes a PyTorch optimizer identically."""
    rng = np.random.default_rng(5)
    init, grads = _init_values(rng), _grads(rng, 6)
    _, opt, params = _run_tinyconv("Adam", dict(lr=1e-2, amsgrad=True), init, grads[:3])
    sd = opt.state_dict()
    tsd = {"state": {i: {k: (torch.tensor(float(v)) if k == "step" else torch.tensor(v)) for k, v in s.items()}
                     for i, s in sd["state"].items()},
           "param_groups": [dict(g, foreach=False, capturable=False, differentiable=False, fused=None)
                            for g in sd["param_groups"]]}
    tparams = [torch.nn.Parameter(torch.tensor(p.numpy())) for p in params]
    topt = torch.optim.Adam(tparams, foreach=False)
    topt.load_state_dict(tsd)
    for step_grads in grads[3:]:
        for p, tp, g in zip(params, tparams, step_grads):
            p.grad = None if g is None else tc.Tensor(g)
            tp.grad = None if g is None else torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12)


def test_repr_lists_groups():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "momentum: 0.9" in text
