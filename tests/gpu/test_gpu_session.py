"""The GPU session's script and the Python entry points it calls, on the CPU: the script's syntax and its
bookkeeping (with a stand-in Python), and ``benchmarks.gpu_profile``, ``benchmarks.gpu_probe`` and
``benchmarks.gpu`` on device 'cuda' served by fake CuPy at tiny sizes, so the GPU session does not fail on
something a CPU could have caught."""
import io
import json
import os
import re
import stat
import subprocess
import sys

import pytest

from benchmarks import gpu, gpu_probe, gpu_profile  # imports PyTorch (if installed) before fake CuPy is installed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_cupy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_session.sh")
pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")


@pytest.fixture
def fake_gpu(monkeypatch):
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU is present: the GPU session itself runs these entry points")
    return fake_cupy.install(monkeypatch, kernels="reference")


def test_the_script_parses():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_the_script_runs_every_step_and_returns_at_most_eight_plainly_named_files(tmp_path):
    # a stand-in for Python that logs its arguments and fails one step, so only the script's own logic runs
    stub = tmp_path / "python"
    stub.write_text("#!/bin/bash\necho \"python $*\"\ncase \"$*\" in *benchmarks.gpu_probe*) exit 3;; esac\n"
                    "exit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=str(stub), TOTAL_BUDGET="120", PATH="/usr/bin:/bin")
    done = subprocess.run(["bash", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)
    assert {"summary.md", "raw.tar.gz", "pytest.log", "bench.log", "probe.log"} <= set(files)
    summary = (out / "summary.md").read_text()
    for name in ("pytest", "bench", "probe", "trace_lenet", "trace_resnet18", "cprofile_lenet", "nsys", "ncu",
                 "bench_tf32"):
        assert re.search(rf"^\| {name} \|", summary, re.M), name
    assert "| probe | failed (exit 3)" in summary
    assert "python -m pytest -m cuda" in (out / "pytest.log").read_text()


def test_the_profile_entry_point_on_fake_cupy(fake_gpu, tmp_path):
    out = io.StringIO()
    assert gpu_profile.main(["--workload", "lenet", "--tiny", "--steps", "1", "--warmup", "1", "--nvtx",
                             "--cprofile", str(tmp_path / "host.txt")], out=out) == 0
    assert "lenet: lenet5 training step, batch 4" in out.getvalue()
    assert "function calls" in (tmp_path / "host.txt").read_text()
    assert gpu_profile.main(["--workload", "resnet18", "--tiny", "--steps", "1", "--warmup", "1"], out=out) == 0


def test_the_profile_trace_on_the_cpu(tmp_path):
    pytest.importorskip("torch")
    prefix = str(tmp_path / "t")
    assert gpu_profile.main(["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "1", "--trace", prefix],
                            out=io.StringIO()) == 0
    assert "GPU busy" in open(prefix + ".md").read()
    out = io.StringIO()
    gpu_profile.main(["--ncu-regex", "--from-trace", prefix + ".json"], out=out)
    assert out.getvalue().startswith("regex:")


def test_kernel_summary_and_ncu_regex_from_a_trace():
    kernel = "cudapy::tinyconv_kernels::im2col::_im2col_kernel32[abi:v1](Array<float, 1>)"
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": kernel, "ts": 0, "dur": 30},
        {"ph": "X", "cat": "kernel", "name": "void cutlass::Kernel2<gemm>(Params)", "ts": 10, "dur": 50},
        {"ph": "X", "cat": "gpu_memset", "name": "Memset", "ts": 100, "dur": 20},
        {"ph": "X", "cat": "cuda_driver", "name": "cuLaunchKernel", "ts": 0, "dur": 5},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 6, "dur": 5},
    ]}
    lines = gpu_profile.kernel_summary(json.loads(json.dumps(trace)), step_seconds=100e-6, steps=2)
    text = "\n".join(lines)
    assert "80.000 us" not in text and "0.080 ms of 0.200 ms wall = 40.0%" in text   # union 0-60 and 100-120
    assert "launch API calls seen: 2 (1.0 a step)" in text
    rows = [l for l in lines if l.startswith("| kernel")]
    assert "Kernel2" in rows[0] and "_im2col_kernel32" in rows[1]                     # by total time
    assert gpu_profile.top_kernel_regex(trace, top=2) == "regex:Kernel2|_im2col_kernel32"


@pytest.mark.slow  # ~40 s: the simulator runs one Python thread per CUDA thread
def test_the_probe_entry_point_on_the_simulator(monkeypatch):
    """The TF32 and launch rows with the ``numba.cuda`` kernels on Numba's simulator, through the real bridge."""
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU is present: the GPU session itself runs this entry point")
    fake_cupy.install(monkeypatch, kernels="simulator")
    out = io.StringIO()
    assert gpu_probe.main(["--tiny"], out=out) == 0
    text = out.getvalue()
    tf32 = re.findall(r"\| (on|off) \| ([0-9.e+-]+) \|", text)
    assert len(tf32) == 4
    for flag, err in tf32:   # fake CuPy rounds to TF32 where tinyconv asks for it
        assert (1e-5 < float(err) < 2e-3) if flag == "on" else float(err) < 1e-6
    assert "host us per call" in text


def test_the_probe_entry_point_on_fake_cupy(fake_gpu):
    out = io.StringIO()
    assert gpu_probe.main(["--tiny", "--graph"], out=out) == 0
    text = out.getvalue()
    tf32 = re.findall(r"\| (on|off) \| ([0-9.e+-]+) \|", text)
    assert len(tf32) == 4
    for flag, err in tf32:   # fake CuPy rounds to TF32 where tinyconv asks for it
        assert (1e-5 < float(err) < 2e-3) if flag == "on" else float(err) < 1e-6
    assert "host us per call" in text and "graph | not tried" in text


def test_the_benchmark_rows_on_fake_cupy_with_tf32(fake_gpu):
    lines = gpu.run(device="cuda", quick=True, out=io.StringIO(), tf32=True)
    assert "with TF32 allowed" in lines[0]
    rows = [l for l in lines if l.startswith("| ") and not l.startswith("| row")]
    assert len(rows) == 10 and all(float(r.split("|")[2]) > 0 for r in rows)
