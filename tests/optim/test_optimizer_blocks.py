"""Optimizer updates run block by block in place: the same numbers as on whole arrays, no full-size temporaries."""
import tracemalloc

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import optim
from tinyconv.nn import Parameter
from tinyconv.optim import optimizer

from test_optimizers import CASES, _case_id, _grads, _init_values, _run_torch


def _run(name, kw, init, grads, dtype=np.float64, layout="C"):
    params = [Parameter(np.array(v, dtype=dtype, order=layout)) for v in init]
    arrays = [p.data for p in params]
    opt = getattr(optim, name)(params, **kw)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else tc.Tensor(np.array(g, dtype=dtype, order=layout))
        opt.step()
        history.append([p.numpy().copy() for p in params])
    assert all(p.data is a for p, a in zip(params, arrays))  # updated in place
    return history


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_blocks_give_the_whole_array_result_bit_for_bit(case, monkeypatch):
    name, kw = case
    rng = np.random.default_rng(7)
    init, grads = _init_values(rng), _grads(rng, 6)
    whole = _run(name, kw, init, grads, np.float32)
    monkeypatch.setattr(optimizer, "BLOCK", 5)  # 12 and 6 elements: blocks of 5, 5, 2 and 5, 1
    blocks = _run(name, kw, init, grads, np.float32)
    for a, b in zip(blocks, whole):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("case", CASES[1::4], ids=_case_id)
def test_blocks_and_non_contiguous_parameters_match_torch(torch, case, monkeypatch):
    name, kw = case
    rng = np.random.default_rng(8)
    init, grads = _init_values(rng), _grads(rng, 6)
    theirs = _run_torch(torch, name, kw, init, grads)
    monkeypatch.setattr(optimizer, "BLOCK", 4)
    for layout in "CF":  # Fortran-ordered arrays are updated whole
        ours = _run(name, kw, init, grads, layout=layout)
        for a, b in zip(ours, theirs):
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_blockwise_passes_none_through_and_covers_every_element(monkeypatch):
    monkeypatch.setattr(optimizer, "BLOCK", 4)
    a, b = np.zeros((3, 5)), np.arange(15.0).reshape(3, 5)
    seen = []

    def rule(x, y, z):
        assert z is None and x.size <= 4
        seen.append(x.size)
        x += y
    optimizer.blockwise(rule, a, b, None)
    assert seen == [4, 4, 4, 3]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "SGD" or c[1].get("momentum")], ids=_case_id)
def test_a_step_allocates_no_parameter_sized_temporary(case):
    name, kw = case
    size = 1 << 21                                   # 8 MiB of float32
    p = Parameter(np.ones(size, np.float32))
    opt = getattr(optim, name)([p], **kw)
    p.grad = tc.Tensor(np.full(size, 0.5, np.float32))
    opt.step()                                       # the first step allocates the state
    tracemalloc.start()
    try:
        opt.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < p.data.nbytes // 4                 # a whole-array rule allocates p.nbytes per temporary
