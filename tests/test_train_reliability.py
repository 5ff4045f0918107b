"""tinyconv.train when things go wrong: a malformed checkpoint changes nothing, a full disk gives one clear
error with the history kept, stale temporary files go, outputs honour the umask, a NaN test loss stops."""
import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend, checkpoint, optim
from tinyconv import functional as F
from tinyconv import train as T
from test_train import make_run, weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_epoch_checkpoint(tmp_path, scheduler=False):
    model, opt, sched, tr, te = make_run(scheduler=scheduler)
    T.fit(model, tr, te, opt, F.cross_entropy, epochs=1, scheduler=sched, checkpoint_dir=tmp_path,
          progress=False, log=None)
    return tmp_path / T.CHECKPOINT_NAME


def everything(model, opt, sched, loader):
    """A comparable picture of all the state a checkpoint load may change."""
    return (weights(model), repr(opt.state_dict()), sched.state_dict() if sched else None,
            dict(vars(loader)), repr(backend.get_rng_state()))


def same(a, b):
    wa, *ra = a
    wb, *rb = b
    return all(np.array_equal(wa[k], wb[k]) for k in wa) and ra == rb


@pytest.mark.parametrize("entry, value, says", [
    ("rng", "not a random state", "'rng' must be"),
    ("rng", {"seed": 1, "bit_generator": {"bit_generator": "PCG64", "state": "x"}}, "random state"),
    ("rng", {"seed": "seven", "bit_generator": {}}, "rng 'seed'"),
    ("model", "weights", "'model' must be a dict"),
    ("model", {"0.weight": "abc"}, "the weight '0.weight'"),
    ("optimizer", [1, 2], "'optimizer' must be a dict"),
    ("optimizer", {"state": {0: 5}, "param_groups": []}, "optimizer state of parameter 0"),
    ("scheduler", "StepLR", "'scheduler' must be a dict"),
    ("train_loader", 7, "'train_loader' must be a dict"),
    ("epoch", "3", "'epoch'"),
    ("history", {"epoch": 1}, "'history'"),
])
def test_malformed_checkpoint_is_refused_before_any_state_changes(tmp_path, entry, value, says):
    path = one_epoch_checkpoint(tmp_path, scheduler=True)
    state = checkpoint.load(path)
    state[entry] = value
    checkpoint.save(path, state)
    model, opt, sched, tr, _ = make_run(seed=9, scheduler=True)
    before = everything(model, opt, sched, tr)
    with pytest.raises(checkpoint.CheckpointError, match=says) as err:
        T.load_training_checkpoint(path, model, opt, sched, tr)
    assert str(path) in str(err.value)
    assert same(everything(model, opt, sched, tr), before)


def test_a_part_that_does_not_fit_rolls_back_the_parts_already_loaded(tmp_path):
    # the loader's batch size differs: found only when the loader loads, after model, optimiser, scheduler
    path = one_epoch_checkpoint(tmp_path, scheduler=True)
    model, opt, sched, tr, _ = make_run(seed=9, scheduler=True)
    tr.batch_size = 8
    before = everything(model, opt, sched, tr)
    with pytest.raises(checkpoint.CheckpointError, match="batch_size.*nothing was changed"):
        T.load_training_checkpoint(path, model, opt, sched, tr)
    assert same(everything(model, opt, sched, tr), before)


def test_resume_of_a_malformed_checkpoint_exits_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    import train_lenet
    monkeypatch.setattr(train_lenet, "load_data", lambda args: fake_data(args))
    args = ["--out", str(tmp_path), "--no-progress", "--batch-size", "16"]
    assert train_lenet.main(args + ["--epochs", "1"]) == 0
    path = tmp_path / T.CHECKPOINT_NAME
    state = checkpoint.load(path)
    state["rng"] = [1, 2, 3]
    checkpoint.save(path, state)
    capsys.readouterr()
    code = train_lenet.main(args + ["--epochs", "2", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(path) in err and "'rng' must be" in err


def fake_data(args):
    from tinyconv.data import ArrayDataset
    rng = np.random.default_rng(0)
    ds = ArrayDataset(rng.integers(0, 255, (32, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 32))
    return ds, ds, "fake digits", "fake digits"


# -- a full disk --------------------------------------------------------------------------------------
def fail_savez_from(monkeypatch, call):
    real, calls = np.savez, [0]

    def savez(f, **members):
        calls[0] += 1
        if calls[0] >= call:
            f.write(b"PK\x03\x04 half a zip file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **members)
    monkeypatch.setattr(np, "savez", savez)


def test_full_disk_gives_one_paragraph_keeps_previous_checkpoint_and_history(tmp_path, monkeypatch):
    model, opt, _, tr, te = make_run()
    fail_savez_from(monkeypatch, call=2)          # the checkpoint after epoch 2 does not fit
    with pytest.raises(T.OutputWriteError) as err:
        T.fit(model, tr, te, opt, F.cross_entropy, epochs=3, checkpoint_dir=tmp_path,
              history_path=tmp_path / "history", progress=False, log=None)
    e = err.value
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC and e.epoch == 2
    msg = str(e)
    assert "\n" not in msg and "No space left on device" in msg and "after epoch 1) is intact" in msg
    assert "--resume" in msg and "history up to epoch 2 was written" in msg
    assert [r["epoch"] for r in e.history] == [1, 2]
    monkeypatch.undo()
    assert checkpoint.load(tmp_path / T.CHECKPOINT_NAME)["epoch"] == 1
    import json
    assert [r["epoch"] for r in json.loads((tmp_path / "history.json").read_text())] == [1, 2]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "history.csv", "history.json"]


def test_train_lenet_maps_a_write_error_to_exit_status_3(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    import train_lenet
    monkeypatch.setattr(train_lenet, "load_data", lambda args: fake_data(args))
    fail_savez_from(monkeypatch, call=1)
    code = train_lenet.main(["--out", str(tmp_path), "--epochs", "1", "--no-progress", "--batch-size", "16"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err and "No space left on device" in err
    assert err.count("\n") == 1                                          # one paragraph


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"),
                    reason="mounting a small tmpfs needs root")
def test_train_lenet_on_a_really_full_disk_exits_3(tmp_path):
    from test_train_lenet_example import synthetic_digits, write_idx
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for prefix, n, seed in (("train", 64, 0), ("t10k", 32, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz", labels)
    out = tmp_path / "out"
    out.mkdir()
    # LeNet's checkpoint (weights + momentum) is ~0.5 MB: the first fits, the second (written beside it) not
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=800k", "tmpfs", str(out)]).returncode:
        pytest.skip("mount -t tmpfs failed here")
    try:
        r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_lenet.py"), "--data-dir",
                            str(data_dir), "--out", str(out), "--epochs", "3", "--no-progress",
                            "--batch-size", "32"], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, MPLBACKEND="Agg", TINYCONV_OFFLINE="1",
                                    PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
        assert r.returncode == 3, r.stderr
        assert "Traceback" not in r.stderr and "No space left on device" in r.stderr
        assert checkpoint.load(out / "checkpoint.npz")["epoch"] == 1
        assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(out)])


# -- loose ends ---------------------------------------------------------------------------------------
def test_stale_temporary_files_are_removed_at_the_next_save(tmp_path):
    path = tmp_path / "checkpoint.npz"
    stale = [tmp_path / ".checkpoint.npz.abcd1234.tmp", tmp_path / ".checkpoint.npz.x_9Zq0Lm.tmp"]
    for s in stale:
        s.write_bytes(b"PK half written by a killed run")
    others = [tmp_path / ".history.json.abcd1234.tmp", tmp_path / "checkpoint.npz.tmp", tmp_path / "notes.tmp"]
    for o in others:
        o.write_bytes(b"not ours")
    checkpoint.save(path, {"epoch": 1})
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint.npz"] + [o.name for o in others])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "c.npz", {"epoch": 1})
        T.write_history(tmp_path / "h", [{"epoch": 1, "loss": 0.5}])
    finally:
        os.umask(old)
    for name in ("c.npz", "h.json", "h.csv"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == mode, name


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"epoch": 1})
    os.chmod(path, 0o640)
    checkpoint.save(path, {"epoch": 2})
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_download_honours_the_umask(tmp_path, monkeypatch):
    from tinyconv.data import download
    monkeypatch.delenv("TINYCONV_OFFLINE", raising=False)
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    old = os.umask(0o022)
    try:
        download.download_url(src.as_uri(), tmp_path / "got.bin", progress=False)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "got.bin").st_mode & 0o777 == 0o644


def test_nan_test_loss_stops_before_the_epoch_is_checkpointed(tmp_path):
    model, opt, _, tr, te = make_run()
    T.fit(model, tr, te, opt, F.cross_entropy, epochs=1, checkpoint_dir=tmp_path, progress=False, log=None)
    good = (tmp_path / T.CHECKPOINT_NAME).read_bytes()

    def nan_when_evaluating(out, y):
        loss = F.cross_entropy(out, y)
        return loss if model.training else loss * float("nan")
    with pytest.raises(T.NonFiniteLossError, match=r"test loss became nan after epoch 2.*not checkpointed"
                                                   r".*after epoch 1\) is unchanged"):
        T.fit(model, tr, te, opt, nan_when_evaluating, epochs=3, checkpoint_dir=tmp_path, resume=True,
              progress=False, log=None)
    assert (tmp_path / T.CHECKPOINT_NAME).read_bytes() == good


def test_scheduler_load_state_dict_takes_only_its_own_keys_with_their_types():
    model, opt, _, _, _ = make_run()
    sched = optim.lr_scheduler.StepLR(opt, step_size=2)
    good = sched.state_dict()
    with pytest.raises(ValueError, match="unknown keys 'optimizer'"):
        sched.load_state_dict(dict(good, optimizer="x"))
    with pytest.raises(ValueError, match="unknown keys 'get_lr'"):
        sched.load_state_dict(dict(good, get_lr=None))
    with pytest.raises(TypeError, match="'last_epoch' must be like"):
        sched.load_state_dict(dict(good, last_epoch="5"))
    with pytest.raises(TypeError, match="'base_lrs'"):
        sched.load_state_dict(dict(good, base_lrs=["a"]))
    with pytest.raises(TypeError, match="expected a dict"):
        sched.load_state_dict([("last_epoch", 3)])
    assert sched.optimizer is opt and sched.state_dict() == good     # nothing changed by the refusals
    sched.load_state_dict(dict(good, last_epoch=7))
    assert sched.last_epoch == 7


def test_sequential_lr_checks_every_child_before_changing_any():
    model, opt, _, _, _ = make_run()
    a = optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    b = optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    seq = optim.lr_scheduler.SequentialLR(opt, [a, b], milestones=[2])
    state = seq.state_dict()
    bad = dict(state, _schedulers=[dict(state["_schedulers"][0], last_epoch=5),
                                   dict(state["_schedulers"][1], gamma="0.9")])
    with pytest.raises(TypeError, match="'gamma'"):
        seq.load_state_dict(bad)
    assert a.last_epoch == state["_schedulers"][0]["last_epoch"]
