"""The benchmark suite's code paths on minimal sizes, so it does not rot.  Nothing here measures speed."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import memory, run, workloads, zoo  # noqa: E402


def _positive(cells):
    return all(float(v.replace(",", "")) > 0 for v in cells)


def _check_tables(tables, impls, sections):
    """Each section's table is there, numbered in ``run.SECTIONS``' order, with the rows of the tiny config."""
    number = {s: str(list(run.SECTIONS).index(s) + 1) for s in run.SECTIONS}
    by_section = {s: t for t in tables for s in run.SECTIONS if t.title.split(".")[0] == number[s]}
    assert sorted(by_section) == sorted(sections) and len(tables) == len(sections)
    big = [i for i in impls if i != "numpy"]   # the zoo, inference and scaling rows run without it
    config = run.Config("tiny")
    if "lenet" in by_section:
        assert len(by_section["lenet"].rows) == 1 and len(by_section["lenet"].rows[0]) == 1 + len(impls) + 3
    if "epoch" in by_section:
        rows = by_section["epoch"].rows
        assert [r[0] for r in rows][:1] == ["tinyconv"] and len(rows) == 1 + 2 * ("torch" in impls)
        assert all(float(r[3]) > 0 and r[4].endswith("%") for r in rows)
    if "conv" in by_section:
        conv = by_section["conv"]
        assert [r[0] for r in conv.rows] == [c.name for c in workloads.conv_cases("tiny")]
        for row in conv.rows:  # every implementation produced a positive throughput
            assert _positive(row[2:2 + len(impls)])
    if "zoo" in by_section:
        rows = by_section["zoo"].rows
        assert [r[0] for r in rows] == [label for label, *_ in config.zoo]
        assert all(_positive(r[3:3 + len(big)]) for r in rows)
        assert not any("differ" in n for n in by_section["zoo"].notes)
    if "inference" in by_section:
        rows = by_section["inference"].rows
        assert [r[0] for r in rows] == [n for n, *_ in config.inference]
        assert all(_positive(r[2:2 + len(big)]) for r in rows)
    if "scaling" in by_section:
        rows = by_section["scaling"].rows
        assert [(r[0], r[1]) for r in rows] == [(sw, f"{b}, 3x{s}x{s}") for sw, b, s in zoo.scaling_points(config)]
        assert all(_positive(r[3:3 + 3 * len(big):3]) for r in rows)
    if "gemm" in by_section:
        assert len(by_section["gemm"].rows) == 1 + ("torch" in impls)


def _write_digits(folder, n_train=128, n_test=64):
    """Small IDX files in MNIST's layout (random pixels, so not the canonical files: a warning, no error)."""
    from tinyconv.data.idx import write_idx
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    return str(folder)


def _tiny(tmp_path):
    config = run.Config("tiny")
    config.epoch_data_dir = _write_digits(tmp_path)
    return config


def test_sections_run_and_write_the_report(tmp_path):
    results = tmp_path / "RESULTS.md"
    gpu = "## GPU results\n\nmeasured on an H100 by python -m benchmarks.gpu\n"
    results.write_text("# an earlier report\n\nold CPU numbers\n\n" + gpu)
    sections = [s for s in run.SECTIONS if s != "memory"]
    tables = run.run(_tiny(tmp_path), sections, with_torch=False, out=None, results_path=str(results))
    _check_tables(tables, ["tinyconv", "numpy"], sections)
    text = results.read_text()
    assert "## Machine" in text and "Numba compilation" in text and "### 9. float32 GEMM" in text
    # the CPU sections are replaced, the hand-pasted GPU section from another machine is kept, once
    assert "old CPU numbers" not in text and text.endswith("\n" + gpu) and text.count("## GPU results") == 1
    assert not (tmp_path / "RESULTS.md.tmp").exists()


def test_memory_of_a_step_is_measured():
    for kind in ("train", "infer"):
        res = memory.measure_step("tinyconv", "lenet5", 2, 32, kind)
        assert res["peak_mib"] >= 0 and res["baseline_mib"] > 0 and res["method"] in ("VmHWM reset", "ru_maxrss")
        assert res["kind"] == kind


def test_superlinear_growth_is_flagged_against_the_lowest_smaller_point():
    # time per unit of work: falls (overheads amortised), then rises 20% (within 25%), then 50% over the lowest
    got = zoo.flag_superlinear([4.0, 2.0, 2.4, 3.0], 0.25)
    assert [round(r, 2) for r, _ in got] == [1.0, 0.5, 1.2, 1.5]
    assert [bad for _, bad in got] == [False, False, False, True]


def test_epoch_row_times_the_script_and_both_torch_pipelines(tmp_path, torch):
    pytest.importorskip("torchvision")
    from benchmarks import lenet_epoch
    table = lenet_epoch.bench_epoch(_tiny(tmp_path), ["tinyconv", "torch"], None)
    _check_tables([table], ["tinyconv", "torch"], ["epoch"])
    assert [r[0] for r in table.rows] == ["tinyconv", "PyTorch, torchvision pipeline", "PyTorch, tensors"]
    assert all(r[2] == "128 / 64" for r in table.rows)
    assert all(r[5].endswith("x") and r[6] for r in table.rows[1:])   # a ratio and a verdict against each


def test_epoch_row_without_mnist_says_so(tmp_path):
    from benchmarks import lenet_epoch
    config = run.Config("tiny")
    config.epoch_data_dir = str(tmp_path)   # an empty folder
    table = lenet_epoch.bench_epoch(config, ["tinyconv"], None)
    assert table.rows == [] and table.notes[0].startswith("Not run: no MNIST here")


def test_zoo_twins_have_torchvisions_parameter_shapes(torch):
    pytest.importorskip("torchvision")
    from benchmarks import torch_models
    names = [n for _, n, *_ in run.ZOO] + [n for n, *_ in run.INFERENCE]
    for name in names:
        ours = torch_models.parameter_shapes(workloads.tinyconv_model(name))
        assert ours == torch_models.parameter_shapes(torch_models.get_model(name)), name


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
    tables = run.run(_tiny(tmp_path), out=None, results_path=str(tmp_path / "R.md"))
    _check_tables(tables, workloads.implementations(), list(run.SECTIONS))
    memory_table = tables[list(run.SECTIONS).index("memory")]
    assert [r[1] for r in memory_table.rows] == ["training step", "inference"]
    assert not any("error" in cell for row in memory_table.rows for cell in row)


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
