"""The benchmark suite's code paths on minimal sizes, so it does not rot.  Nothing here measures speed."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import memory, run, workloads  # noqa: E402


def _check_tables(tables, impls, sections):
    by_number = {t.title.split(".")[0]: t for t in tables}
    assert sorted(by_number) == sorted(str(list(run.SECTIONS).index(s) + 1) for s in sections)
    if "1" in by_number:
        assert len(by_number["1"].rows) == 1 and len(by_number["1"].rows[0]) == 1 + len(impls) + 3
    if "2" in by_number:
        conv = by_number["2"]
        assert [r[0] for r in conv.rows] == [c.name for c in workloads.conv_cases("tiny")]
        for row in conv.rows:  # every implementation produced a positive throughput
            assert all(float(v.replace(",", "")) > 0 for v in row[2:2 + len(impls)])
    if "5" in by_number:
        assert len(by_number["5"].rows) == 1 + ("torch" in impls)


def test_sections_run_and_write_the_report(tmp_path):
    results = tmp_path / "RESULTS.md"
    gpu = "## GPU results\n\nmeasured on an H100 by python -m benchmarks.gpu\n"
    results.write_text("# an earlier report\n\nold CPU numbers\n\n" + gpu)
    sections = ["lenet", "conv", "models", "gemm"]
    tables = run.run(run.Config("tiny"), sections, with_torch=False, out=None, results_path=str(results))
    _check_tables(tables, ["tinyconv", "numpy"], sections)
    text = results.read_text()
    assert "## Machine" in text and "Numba compilation" in text and "### 5. float32 GEMM" in text
    # the CPU sections are replaced, the hand-pasted GPU section from another machine is kept, once
    assert "old CPU numbers" not in text and text.endswith("\n" + gpu) and text.count("## GPU results") == 1
    assert not (tmp_path / "RESULTS.md.tmp").exists()


def test_memory_of_a_step_is_measured():
    res = memory.measure_step("tinyconv", "lenet5", 2, 32)
    assert res["peak_mib"] >= 0 and res["baseline_mib"] > 0 and res["method"] in ("VmHWM reset", "ru_maxrss")


def test_conv_case_counts_flops_of_forward_and_both_gradients():
    case = workloads.ConvCase("c", N=2, C=4, K=6, H=9, KH=3, stride=2, padding=1, groups=2)
    assert case.OH == 5
    assert case.flops == 3 * 2 * (2 * 6 * 5 * 5 * 2 * 3 * 3)


def test_torch_twin_and_conv_case_run(torch):
    from benchmarks import torch_models
    assert workloads.num_parameters(workloads.tinyconv_model("lenet5")) == \
        workloads.num_parameters(torch_models.get_model("lenet5"))
    workloads.conv_cases("tiny")[0].build(["torch"])["torch"]()


@pytest.mark.slow
def test_whole_suite_with_torch_and_subprocesses(tmp_path, torch):
    tables = run.run(run.Config("tiny"), out=None, results_path=str(tmp_path / "R.md"))
    _check_tables(tables, workloads.implementations(), list(run.SECTIONS))
    assert not any("error" in cell for row in tables[3].rows for cell in row)


def test_profile_attributes_a_step_to_ops_and_kernels_and_restores_them():
    from benchmarks import profile
    from tinyconv import backend
    from tinyconv.functions import conv
    from tinyconv.functions.conv import Conv2dFn
    before = (Conv2dFn.forward, Conv2dFn.backward, conv.get_kernel)
    lines = profile.profile_row("lenet5", batch=2, steps=1, with_torch=False)
    text = "\n".join(lines)
    assert lines[0] == "### lenet5 training step (batch 2, 1x32x32)"
    row = next(line for line in lines if line.startswith("| Conv2dFn |"))
    assert row.split("|")[2].strip() == "3"          # three convolutions a step
    assert "| im2col |" in text and "| col2im |" in text and "engine and Python" in text
    assert (Conv2dFn.forward, Conv2dFn.backward, conv.get_kernel) == before and conv.get_kernel is backend.get_kernel
    lines = profile.profile_row("conv:LeNet C1 5x5", steps=1, scale="tiny", with_torch=False)
    assert lines[0].startswith("### conv fwd+bwd LeNet C1 5x5") and any("| Conv2dFn | 1 |" in ln for ln in lines)


def test_profile_of_torch_runs(torch):
    from benchmarks import profile
    lines = profile.profile_row("conv:LeNet C1 5x5", steps=1, scale="tiny")
    assert any(line.startswith("PyTorch") for line in lines)
    assert any("convolution" in line for line in lines)


def test_quick_run_leaves_the_committed_results_alone(monkeypatch):
    """``python -m benchmarks --quick`` reports to the git-ignored RESULTS-partial.md: ``git status`` stays clean."""
    import shutil
    import subprocess
    if shutil.which("git") is None or subprocess.run(["git", "-C", ROOT, "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    committed = os.path.join(ROOT, "benchmarks", "RESULTS.md")
    before = open(committed, "rb").read()
    status = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "benchmarks"],
                            capture_output=True, text=True).stdout
    written = []
    real_run = run.run

    def tiny_run(config, sections, *args, results_path=None, **kw):  # the quick run's arguments, tiny sizes
        written.append(results_path)
        return real_run(run.Config("tiny"), ["gemm"], False, False, results_path=results_path, **kw)

    monkeypatch.setattr(run, "run", tiny_run)
    run.main(["--quick", "--only", "gemm", "--no-torch"])
    assert written == [os.path.join(run.HERE, run.PARTIAL_RESULTS)] and os.path.exists(written[0])
    assert open(committed, "rb").read() == before
    assert subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "benchmarks"],
                          capture_output=True, text=True).stdout == status
    os.remove(written[0])
    monkeypatch.setattr(run, "run", lambda *a, results_path=None, **kw: written.append(results_path))
    run.main([])  # the full run of every section is the one that rewrites RESULTS.md
    assert written[-1] == committed
