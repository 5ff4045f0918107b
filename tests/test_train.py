"""tinyconv.train: the loop on synthetic data, history files, exact resume, NaN stop, device handling."""
import csv
import json
import os

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend, checkpoint, nn, optim
from tinyconv import functional as F
from tinyconv.data import ArrayDataset, DataLoader
from tinyconv import train as T


# -- a tiny problem: 3 Gaussian blobs in 4-D, a 4-8-3 MLP, SGD with momentum, a shuffling DataLoader ------
def TinyMLP(d=4, h=8, c=3):
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, c))


cross_entropy = F.cross_entropy


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0]], dtype=np.float32)
    return (centres[y] + rng.standard_normal((n, 4)).astype(np.float32)), y


def make_run(seed=0, lr=0.1, scheduler=False):
    tc.manual_seed(seed)
    model = TinyMLP()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if scheduler else None
    xtr, ytr = blobs(96, seed=1)
    xte, yte = blobs(40, seed=2)
    train_loader = DataLoader(ArrayDataset(xtr, ytr), batch_size=16, shuffle=True, seed=3)
    test_loader = DataLoader(ArrayDataset(xte, yte), batch_size=16)
    return model, opt, sched, train_loader, test_loader


def weights(model):
    return {k: v.data.copy() for k, v in model.state_dict().items()}


# -- tests ----------------------------------------------------------------------------------------------
def test_fit_learns_and_records_history(tmp_path):
    model, opt, _, train_loader, test_loader = make_run()
    lines = []
    history = T.fit(model, train_loader, test_loader, opt, cross_entropy, epochs=4, checkpoint_dir=tmp_path,
                    history_path=tmp_path / "history", progress=False, log=lines.append)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc1"] > 0.8                 # three well-separated blobs
    for r in history:
        assert 0 <= r["test_acc1"] <= r["test_acc5"] == 1.0   # 3 classes: the top-5 holds every class
        assert r["images_per_s"] > 0 and r["lr"] == 0.1
    assert len(lines) == 4 and lines[-1].startswith("epoch 4/4")
    assert json.loads((tmp_path / "history.json").read_text()) == history
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["test_acc1"]) == pytest.approx(history[-1]["test_acc1"])
    assert (tmp_path / T.CHECKPOINT_NAME).exists()


def test_evaluate_matches_a_direct_computation():
    model, _, _, _, test_loader = make_run()
    result = T.evaluate(model, test_loader, cross_entropy)
    ds = test_loader.dataset
    out = model(tc.tensor(ds.images))
    assert result["samples"] == 40
    assert result["loss"] == pytest.approx(float(cross_entropy(out, tc.tensor(ds.labels)).item()), rel=1e-5)
    assert result["acc1"] == pytest.approx(np.mean(out.data.argmax(axis=1) == ds.labels))
    assert model.training                                # evaluate restores the mode


@pytest.mark.parametrize("interrupt", ["between_epochs", "mid_epoch"])
def test_resume_is_bitwise_identical(tmp_path, interrupt):
    model, opt, sched, tr, te = make_run(scheduler=True)
    T.fit(model, tr, te, opt, cross_entropy, epochs=3, scheduler=sched, progress=False, log=None)
    expected = weights(model)

    model, opt, sched, tr, te = make_run(scheduler=True)
    if interrupt == "between_epochs":
        T.fit(model, tr, te, opt, cross_entropy, epochs=1, scheduler=sched, checkpoint_dir=tmp_path,
              progress=False, log=None)
    else:
        def crash(epoch, step, loss):
            if (epoch, step) == (2, 3):
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            T.fit(model, tr, te, opt, cross_entropy, epochs=3, scheduler=sched, checkpoint_dir=tmp_path,
                  progress=False, log=None, on_step_end=crash)

    # A "new process": fresh objects built from another seed; everything must come from the checkpoint.
    model, opt, sched, tr, te = make_run(seed=99, lr=0.5, scheduler=True)
    tr.seed = 12345
    history = T.fit(model, tr, te, opt, cross_entropy, epochs=3, scheduler=sched, checkpoint_dir=tmp_path,
                    resume=True, progress=False, log=None)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["lr"] for r in history] == [0.1, 0.05, 0.025]
    got = weights(model)
    for k in expected:
        assert np.array_equal(got[k], expected[k]), k


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    model, opt, _, tr, te = make_run()
    T.fit(model, tr, te, opt, cross_entropy, epochs=1, checkpoint_dir=tmp_path, progress=False, log=None)
    before = weights(model)
    lines = []
    history = T.fit(model, tr, te, opt, cross_entropy, epochs=1, checkpoint_dir=tmp_path, resume=True,
                    progress=False, log=lines.append)
    assert len(history) == 1 and "after epoch 1" in lines[0]
    assert all(np.array_equal(v, before[k]) for k, v in weights(model).items())


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    model, opt, _, tr, te = make_run()
    lines = []
    history = T.fit(model, tr, te, opt, cross_entropy, epochs=1, checkpoint_dir=tmp_path, resume=True,
                    progress=False, log=lines.append)
    assert len(history) == 1 and lines[0].startswith("no checkpoint at")


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path):
    model, opt, _, tr, te = make_run()
    T.fit(model, tr, te, opt, cross_entropy, epochs=1, checkpoint_dir=tmp_path, progress=False, log=None)
    path = tmp_path / T.CHECKPOINT_NAME
    good = path.read_bytes()
    after_epoch_1 = weights(model)

    def poisoned(logits, y):
        poisoned.calls += 1
        loss = cross_entropy(logits, y)
        return loss * float("nan") if poisoned.calls == 4 else loss
    poisoned.calls = 0
    with pytest.raises(T.NonFiniteLossError, match=r"nan at epoch 2, step 4.*checkpoint.*unchanged"):
        T.fit(model, tr, te, opt, poisoned, epochs=3, checkpoint_dir=tmp_path, resume=True, progress=False,
              log=None)
    assert path.read_bytes() == good
    assert all(np.isfinite(v).all() for v in weights(model).values())   # the bad step was not applied
    model2, opt2, _, tr2, _ = make_run(seed=5)
    state = T.load_training_checkpoint(path, model2, opt2, None, tr2)
    assert state["epoch"] == 1
    assert all(np.array_equal(v, after_epoch_1[k]) for k, v in weights(model2).items())


def test_inf_loss_before_any_checkpoint():
    model, opt, _, tr, te = make_run()
    with pytest.raises(T.NonFiniteLossError, match=r"inf at epoch 1, step 1; no checkpoint"):
        T.fit(model, tr, te, opt, lambda out, y: cross_entropy(out, y) + float("inf"), epochs=1,
              progress=False, log=None)


def test_checkpoint_of_another_model_is_rejected_by_name(tmp_path):
    model, opt, _, tr, te = make_run()
    T.fit(model, tr, te, opt, cross_entropy, epochs=1, checkpoint_dir=tmp_path, progress=False, log=None)
    other = TinyMLP(h=5)
    with pytest.raises(checkpoint.CheckpointError) as err:
        T.fit(other, tr, te, optim.SGD(other.parameters(), 0.1), cross_entropy, epochs=2, checkpoint_dir=tmp_path,
              resume=True, progress=False, log=None)
    msg = str(err.value)
    assert str(tmp_path / T.CHECKPOINT_NAME) in msg
    assert "0.weight: checkpoint (8, 4) vs model (5, 4)" in msg and "2.bias" not in msg


def test_checkpoint_restores_rng_state(tmp_path):
    model, opt, _, tr, te = make_run()
    T.fit(model, tr, te, opt, cross_entropy, epochs=1, checkpoint_dir=tmp_path, progress=False, log=None)
    expected = backend.host_rng().random(3)
    tc.manual_seed(777)
    T.load_training_checkpoint(tmp_path / T.CHECKPOINT_NAME, model, opt, None, tr)
    assert np.array_equal(backend.host_rng().random(3), expected)


def test_history_path_accepts_suffix(tmp_path):
    T.write_history(tmp_path / "h.json", [{"epoch": 1, "loss": 0.5}])
    assert sorted(os.listdir(tmp_path)) == ["h.csv", "h.json"]
    assert (tmp_path / "h.csv").read_text().splitlines() == ["epoch,loss", "1,0.5"]


def test_plot_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    history = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "train_acc": 0.5 + e / 10,
                "test_acc1": 0.45 + e / 10, "test_acc5": 0.9} for e in (1, 2, 3)]
    T.plot_history(history, tmp_path / "curves.png", title="tiny")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curves.png"]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_fit_steps_reduce_lr_on_plateau_with_the_test_metric(mode):
    model, opt, _, train_loader, test_loader = make_run(lr=0.1)
    # patience 0 and a huge absolute threshold: no epoch after the first (which sets the best value) counts
    # as an improvement, so the lr halves after every later epoch; the metric handed over is checked by a spy
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=0, threshold=1e9,
                                                 threshold_mode="abs")
    seen, step = [], sched.step
    sched.step = lambda metric: (seen.append(metric), step(metric))
    history = T.fit(model, train_loader, test_loader, opt, cross_entropy, epochs=3, scheduler=sched,
                    progress=False, log=None)
    assert [r["lr"] for r in history] == [0.1, 0.1, 0.05]
    assert opt.param_groups[0]["lr"] == 0.025
    assert seen == [r["test_loss" if mode == "min" else "test_acc1"] for r in history]
