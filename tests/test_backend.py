"""Backends: array modules, devices, CUDA availability, kernel dispatch, seeding, and a light import."""
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _FakeGpuArray(np.ndarray):
    """A NumPy array that the backend takes for a CuPy one (its type lives in a 'cupy' module)."""


_FakeGpuArray.__module__ = "cupy._fake"


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter that imports this checkout's tinyconv; return its stdout."""
    paths = [ROOT, os.path.join(ROOT, ".dev"), os.environ.get("PYTHONPATH", "")]
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), **env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- array modules and devices ----------------------------------------------------------------------------
def test_get_array_module_and_device_of_on_the_cpu():
    a = np.zeros(3)
    assert backend.get_array_module(a) is np and backend.get_array_module(tc.Tensor(a)) is np
    assert tc.get_array_module(tc.zeros(2)) is np
    assert backend.device_of(a) == "cpu" and backend.device_of(a.view(_FakeGpuArray)) == "cuda"
    assert backend.is_array(a) and not backend.is_array([1, 2])
    assert backend.xp_for("cpu") is np


@pytest.mark.parametrize("given, name", [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda"),
                                         (types.SimpleNamespace(type="cuda"), "cuda")])
def test_normalize_device(given, name):
    assert backend.normalize_device(given) == name


def test_unknown_device_is_an_error():
    with pytest.raises(ValueError, match=r"unknown device 'gpu': expected 'cpu' or 'cuda'"):
        tc.zeros(2, device="gpu")


def test_cuda_is_unavailable_without_cupy_or_without_a_device(monkeypatch):
    monkeypatch.setattr(tc.backend, "_cuda_available", None)
    monkeypatch.setattr(backend, "cupy_or_none", lambda: None)
    assert tc.cuda.is_available() is False and tc.cuda.device_count() == 0
    tc.cuda.synchronize()  # a no-op, not an error

    def no_driver():
        raise RuntimeError("cudaErrorNoDevice")
    runtime = types.SimpleNamespace(getDeviceCount=no_driver)
    broken = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setattr(tc.backend, "_cuda_available", None)
    monkeypatch.setattr(backend, "cupy_or_none", lambda: broken)
    assert tc.cuda.is_available() is False
    with pytest.raises(RuntimeError, match="device 'cuda' requested, but CUDA is not available"):
        tc.zeros(2, device="cuda")


# -- kernel dispatch ------------------------------------------------------------------------------------------
@pytest.fixture
def fake_kernel(monkeypatch):
    """A kernel family ``tag`` whose three implementations say which one ran (1 numpy, 2 cpu, 3 cuda)."""
    import tinyconv_kernels
    mod = types.ModuleType("tinyconv_kernels._test_tag")
    mod.tag_numpy = lambda x: np.full_like(x, 1)
    mod.tag_cpu = lambda x: np.full_like(x, 2)
    mod.tag_cuda = lambda x: (np.full_like(x, 3), np.full_like(x, 3))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(tinyconv_kernels.FAMILIES, "tag", "_test_tag")
    monkeypatch.setattr(backend, "_cuda_wrappers", {})
    monkeypatch.setattr(backend, "_cpu_wrappers", {})  # get_kernel remembers what it found
    return mod


def test_get_kernel_dispatches_by_name_device_and_mode(fake_kernel):
    x = np.zeros(2)

    def which(arr):
        out = backend.get_kernel("tag", arr)(arr)
        return int((out[0] if isinstance(out, tuple) else out)[0])
    assert which(x) == (1 if backend.kernel_mode() == "numpy" else 2)
    default = which(x)
    with backend.use_kernels("numpy"):
        assert which(x) == 1
        with backend.use_kernels("numba"):
            assert which(x) == 2
        assert backend.kernel_mode() == "numpy"
    assert which(x) == default
    assert which(x.view(_FakeGpuArray)) == 3  # a GPU array gets the CUDA kernel (tuples pass through)


def test_kernel_errors_are_clear(fake_kernel):
    with pytest.raises(ValueError, match="unknown kernel mode 'fast'"):
        with backend.use_kernels("fast"):
            pass
    with pytest.raises(KeyError, match="unknown kernel 'nope'.*tag"):
        backend.get_kernel("nope", np.ones(1))
    del fake_kernel.tag_cpu, fake_kernel.tag_numpy
    with pytest.raises(NotImplementedError, match="kernel 'tag' has no numpy implementation"):
        with backend.use_kernels("numba"):
            backend.get_kernel("tag", np.ones(1))


def test_a_kernel_without_a_twin_for_the_device_runs_its_numpy_reference(fake_kernel):
    """The rule, in one place: no ``_cpu`` or no ``_cuda`` -> the NumPy reference, on whatever arrays it gets."""
    del fake_kernel.tag_cpu, fake_kernel.tag_cuda
    with backend.use_kernels("numba"):
        assert backend.get_kernel("tag", np.zeros(2))(np.zeros(2))[0] == 1
    gpu = np.zeros(2).view(_FakeGpuArray)
    assert backend.get_kernel("tag", gpu) is fake_kernel.tag_numpy  # unwrapped: the reference takes CuPy arrays


def test_the_environment_variable_forces_the_numpy_reference():
    code = """
        import sys, types
        import tinyconv_kernels
        from tinyconv import backend
        mod = types.ModuleType("tinyconv_kernels._test_twice")
        mod.twice_numpy, mod.twice_cpu = (lambda: "numpy"), (lambda: "cpu")
        sys.modules[mod.__name__] = mod
        tinyconv_kernels.FAMILIES["twice"] = "_test_twice"
        print(backend.kernel_mode(), backend.get_kernel("twice", __import__("numpy").ones(1))())
    """
    assert run_python(code, TINYCONV_KERNELS="numpy").split() == ["numpy", "numpy"]
    assert run_python(code, TINYCONV_KERNELS="numba").split() == ["numba", "cpu"]
    out = subprocess.run([sys.executable, "-c", "import tinyconv"], capture_output=True, text=True,
                         env=dict(os.environ, TINYCONV_KERNELS="fastest", PYTHONPATH=ROOT + os.pathsep +
                                  os.path.join(ROOT, ".dev")))
    assert out.returncode != 0 and "TINYCONV_KERNELS='fastest'" in out.stderr


# -- import cost and CPU paths that never touch CuPy ---------------------------------------------------------
def test_import_loads_no_jit_compiler_gpu_library_or_torch():
    out = run_python("""
        import sys
        import tinyconv
        print(sorted(m for m in ("numba", "cupy", "torch") if m in sys.modules))
    """)
    assert out.strip() == "[]"


def test_cpu_work_never_tries_to_import_cupy():
    out = run_python("""
        import sys

        class Spy:  # records every attempt to import cupy, installed or not
            tried = []

            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("cupy", "cupyx"):
                    self.tried.append(name)
                return None
        sys.meta_path.insert(0, Spy())
        import tinyconv as tc
        tc.manual_seed(0)
        x = tc.randn(3, 4, requires_grad=True)
        w = tc.rand(4, 2, requires_grad=True).to("cpu")
        y = (x @ w).exp().sum(axis=1).mean() + x[[0, 0]].sum() + tc.cat(tc.split(x, 2, dim=1), dim=1).max()
        y.backward()
        tc.gradcheck(lambda x: (x * x).sum(), [tc.randn(3, dtype=tc.float64, requires_grad=True)])
        print(Spy.tried)
    """)
    assert out.strip() == "[]"


# -- seeding --------------------------------------------------------------------------------------------------
def test_manual_seed_makes_random_tensors_reproducible():
    draws = []
    for seed in (7, 7, 8):
        tc.manual_seed(seed)
        draws.append((tc.randn(3, 2).numpy(), tc.rand(4).numpy(), tc.randint(0, 100, (5,)).numpy(),
                      tc.randn(2, dtype=tc.float64).numpy()))
    for a, b in zip(draws[0], draws[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(draws[0][0], draws[2][0])
    assert draws[0][3].dtype == np.float64


def test_rng_state_round_trips():
    tc.manual_seed(3)
    state = backend.get_rng_state()
    a = tc.randn(4).numpy()
    backend.set_rng_state(state)
    np.testing.assert_array_equal(tc.randn(4).numpy(), a)
    assert backend.rng_for(np) is backend.host_rng()


def test_random_tensors_for_the_gpu_are_drawn_on_the_host(monkeypatch):
    # one seed, the same values on every device: the GPU tensor is the host draw, moved
    tc.manual_seed(11)
    cpu = tc.randn(3, 3).numpy(), tc.rand(2).numpy()
    monkeypatch.setattr(backend, "to_device", lambda arr, device: np.asarray(arr).view(_FakeGpuArray))
    tc.manual_seed(11)
    gpu = tc.randn(3, 3, device="cuda"), tc.rand(2, device="cuda")
    for c, g in zip(cpu, gpu):
        assert g.device == "cuda"
        np.testing.assert_array_equal(np.asarray(g.data), c)


def test_only_the_backend_imports_cupy_numba_or_the_kernels():
    import ast
    banned = {"cupy", "cupyx", "numba", "tinyconv_kernels"}
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "tinyconv")):
        for name in files:
            path = os.path.join(folder, name)
            # the backend, and its CUDA half (the CuPy <-> numba.cuda bridge, used by backend.get_kernel only)
            if not name.endswith(".py") or path in (os.path.join(ROOT, "tinyconv", "backend.py"),
                                                   os.path.join(ROOT, "tinyconv", "cuda_bridge.py")):
                continue
            for node in ast.walk(ast.parse(open(path).read())):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                offenders += [f"{os.path.relpath(path, ROOT)}: {m}" for m in mods if m.split(".")[0] in banned]
    assert offenders == []


# -- on a GPU (skipped without one) ------------------------------------------------------------------------------
needs_gpu = pytest.mark.skipif(not tc.cuda.is_available(), reason="needs CuPy and a CUDA GPU")


@needs_gpu
@pytest.mark.cuda
def test_gpu_and_cpu_agree_on_values_gradients_and_seeded_draws():
    tc.manual_seed(5)
    cpu_draw = tc.randn(4, 3).numpy()
    tc.manual_seed(5)
    gpu_draw = tc.randn(4, 3, device="cuda")
    assert gpu_draw.device == "cuda" and tc.get_array_module(gpu_draw) is not np
    np.testing.assert_array_equal(gpu_draw.numpy(), cpu_draw)

    results = []
    for device in ("cpu", "cuda"):
        x = tc.tensor(cpu_draw, dtype=tc.float64, requires_grad=True, device=device)
        w = tc.tensor(np.arange(6.0).reshape(3, 2) / 6, requires_grad=True, device=device)
        parts = tc.split(x @ w, 1, dim=1)
        y = (tc.exp(parts[0]) * x[[0, 0, 2]].sum() + tc.maximum(parts[1], 0.1).var()).sum()
        y.backward()
        assert x.grad.device == device
        results.append((y.item(), x.grad.numpy(), w.grad.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10)


@needs_gpu
@pytest.mark.cuda
def test_gradcheck_and_device_moves_on_the_gpu():
    x = tc.randn(3, 4, dtype=tc.float64, device="cuda", requires_grad=True)
    assert tc.gradcheck(lambda x: (x * x).sum(axis=1).exp() + x[[1, 1]].sum(), [x])
    c = tc.randn(2, 3, requires_grad=True)
    (c.to("cuda") * 2).sum().backward()
    assert c.grad.device == "cpu"
    np.testing.assert_array_equal(c.grad.numpy(), np.full((2, 3), 2.0))
    with pytest.raises(RuntimeError, match="on 'cpu'.*on 'cuda'|on 'cuda'.*on 'cpu'"):
        c * c.to("cuda")
