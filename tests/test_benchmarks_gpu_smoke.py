"""The GPU benchmark rows' harness, exercised on the CPU at tiny sizes so it does not rot without a GPU."""
import io

import tinyconv
from benchmarks import gpu


def test_gpu_rows_run_on_the_cpu_at_tiny_sizes():
    out = io.StringIO()
    lines = gpu.run(device="cpu", quick=True, out=out)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| row")]
    assert len(rows) == 1 + 7 + 2          # LeNet epoch, the seven conv layers, two networks
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0         # tinyconv measured something finite and positive
    assert out.getvalue().count("\n") == len(lines)


def test_without_cuda_the_gpu_rows_say_so_and_exit_2(capsys):
    if tinyconv.cuda.is_available():
        return
    assert gpu.main([]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
