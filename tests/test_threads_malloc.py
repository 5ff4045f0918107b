"""threads.tune_malloc (called by ``import tinyconv``): glibc keeps freed memory, so training steps stop page-faulting their arrays back in."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt")

STEPS = """
import resource, sys
import numpy as np
import tinyconv as tc, tinyconv.models
import tinyconv.functional as F
from tinyconv import optim
tc.manual_seed(0)
model = tc.models.get_model("lenet5")
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = tc.randn(64, 1, 32, 32), tc.tensor(np.arange(64) % 10)
def step():
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra)
    return env


def _faults_per_step(mode, threads):
    env = _clean_env(TINYCONV_THREADS=threads, **({"TINYCONV_TUNE_MALLOC": "0"} if mode == "untuned" else {}))
    out = subprocess.run([sys.executable, "-c", STEPS, mode], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


# Whether glibc's defaults fault depends on the exact sequence of sizes freed and allocated: once conv2d did
# its work chunk by chunk (and on helper threads, with their own malloc arenas), LeNet at batch 16 faulted
# between 0 and 15 times a step under the defaults.  At batch 64 the step frees enough, on one thread and on
# two, to show the difference.
@pytest.mark.parametrize("threads", ["1", "2"])
def test_training_steps_reuse_freed_memory_without_page_faults(threads):
    untuned, tuned = _faults_per_step("untuned", threads), _faults_per_step("tuned", threads)
    assert untuned > 100         # glibc's defaults: hundreds of 4 KiB faults per LeNet step at batch 64
    assert tuned < untuned / 10  # tuned: the freed arrays are reused


def test_a_malloc_setting_of_the_user_is_kept():
    code = "import tinyconv.threads as t; print(t.tune_malloc())"
    run = lambda env: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,  # noqa: E731
                                     text=True, check=True).stdout.split()
    assert run(_clean_env()) == ["True"]
    assert run(_clean_env(MALLOC_TRIM_THRESHOLD_="1000000")) == ["False"]
    assert run(_clean_env(MALLOC_ARENA_MAX="4")) == ["False"]
    assert run(_clean_env(TINYCONV_TUNE_MALLOC="0")) == ["False"]


HEAPS = """
import ctypes, threading
import numpy as np
import tinyconv
held = []
worker = threading.Thread(target=lambda: held.append(np.ones(1000)))  # a helper thread's allocation
worker.start()
worker.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena i:" paragraph per heap, on stderr
"""


def _heaps(env):
    out = subprocess.run([sys.executable, "-c", HEAPS], env=env, capture_output=True, text=True, check=True)
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


def test_threads_share_one_heap():
    # glibc gives a new thread a heap of its own; what a helper thread freed then stays there, unused by the
    # main thread, and counts in the peak (threads.py)
    assert _heaps(_clean_env()) == 1
    assert _heaps(_clean_env(TINYCONV_TUNE_MALLOC="0")) > 1
    assert _heaps(_clean_env(MALLOC_ARENA_MAX="2")) > 1  # the user's setting is kept
