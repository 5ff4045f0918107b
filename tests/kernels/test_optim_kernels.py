"""The fused SGD step: Numba CPU and numba.cuda (simulator) give the NumPy reference's bits, in place."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from numba import cuda

import tinyconv as tc
from tinyconv import backend, optim
from tinyconv_kernels import optim as kernels

OPTIONS = st.fixed_dictionaries({
    "lr": st.sampled_from([0.1, 0.01, 1e-3]),
    "momentum": st.sampled_from([0.0, 0.9, 0.5]),
    "dampening": st.sampled_from([0.0, 0.1]),
    "weight_decay": st.sampled_from([0.0, 1e-4, 0.05]),
    "nesterov": st.booleans(),
    "maximize": st.booleans(),
    "first": st.booleans(),
})


def arrays(dtype, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(3)]


def run(impl, p, g, buf, opts):
    if impl == "cuda":
        dp, dg, db = (None if a is None else cuda.to_device(a) for a in (p, g, buf))
        kernels.sgd_step_cuda(dp, dg, db, **opts)
        return dp.copy_to_host(), None if db is None else db.copy_to_host()
    getattr(kernels, f"sgd_step_{impl}")(p, g, buf, **opts)
    return p, buf


@given(opts=OPTIONS, dtype=st.sampled_from([np.float32, np.float64]), n=st.integers(1, 300),
       seed=st.integers(0, 50))
def test_numba_and_cuda_give_the_references_bits(opts, dtype, n, seed):
    p, g, buf = arrays(dtype, n, seed)
    if opts["momentum"] == 0:
        buf = None
    expected = run("numpy", p.copy(), g, None if buf is None else buf.copy(), opts)
    for impl in ("cpu", "cuda"):
        got = run(impl, p.copy(), g, None if buf is None else buf.copy(), opts)
        np.testing.assert_array_equal(got[0], expected[0], err_msg=impl)
        if buf is not None:
            np.testing.assert_array_equal(got[1], expected[1], err_msg=impl)
    assert expected[0].dtype == dtype and not np.array_equal(expected[0], p)


def test_sgd_takes_the_kernel_and_the_reference_path_to_the_same_bits():
    trajectories = []
    for mode in ("numba", "numpy"):
        tc.manual_seed(0)
        w = tc.randn(70_000, requires_grad=True)         # over one block of the reference path too
        v = tc.randn(3, 5).T.requires_grad_()            # not contiguous: the reference path in both modes
        opt = optim.SGD([w, v], lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
        with backend.use_kernels(mode):
            for step in range(3):
                opt.zero_grad()
                ((w * w).sum() + (v * v * step).sum()).backward()
                opt.step()
        trajectories.append((w.numpy().copy(), v.numpy().copy(), opt.state[w]["momentum_buffer"].copy()))
    for a, b in zip(*trajectories):
        np.testing.assert_array_equal(a, b)


def test_the_update_is_in_place():
    p, g, buf = arrays(np.float32, 10, 0)
    ids = (p.__array_interface__["data"][0], buf.__array_interface__["data"][0])
    kernels.sgd_step_cpu(p, g, buf, 0.1, 0.9, 0.0, 0.0, False, False, False)
    assert (p.__array_interface__["data"][0], buf.__array_interface__["data"][0]) == ids


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_momentum_buf_is_none(dtype):
    p, g, _ = arrays(dtype, 5, 1)
    q = p.copy()
    kernels.sgd_step_cpu(p, g, None, 0.5, 0.0, 0.0, 0.0, False, False, True)
    np.testing.assert_array_equal(p, q - dtype(0.5) * g)


@pytest.mark.parametrize("layout", ["2-D", "transposed", "mixed dtypes"])
def test_the_cpu_kernel_takes_any_layout_with_the_references_bits(layout):
    rng = np.random.default_rng(3)
    p, g, buf = (rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3))
    if layout == "transposed":
        p, g = np.asfortranarray(p), np.asfortranarray(g)  # not C-contiguous: the kernel runs the reference
    if layout == "mixed dtypes":
        g = g.astype(np.float64)
    opts = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=1e-3, nesterov=True, maximize=False,
                first=False)
    expected_p, expected_buf = p.copy(), buf.copy()
    kernels.sgd_step_numpy(expected_p, g, expected_buf, **opts)
    kernels.sgd_step_cpu(p, g, buf, **opts)
    np.testing.assert_array_equal(p, expected_p)
    np.testing.assert_array_equal(buf, expected_buf)
