"""tinyconv.checkpoint: round trip of nested state, atomic writes, clear errors on bad files."""
import os
import zipfile

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import checkpoint, nn
from tinyconv.checkpoint import CheckpointError


def sample_state():
    return {
        "epoch": 3,
        "model": {"conv1.weight": tc.randn(6, 1, 5, 5), "fc.bias": tc.zeros(10)},
        "optimizer": {"state": {0: {"momentum_buffer": np.arange(6.0)}, 1: {}},
                      "param_groups": [{"lr": 0.01, "momentum": 0.9, "nesterov": False, "params": [0, 1]}]},
        "rng": {"seed": 7, "bit_generator": tc.backend.get_rng_state()["bit_generator"]},
        "shape": (3, 32, 32),
        "history": [{"epoch": 1, "test_acc1": 0.5, "loss": float("nan")}],
        "note": None,
        "scalar": np.float32(1.5),
    }


def test_round_trip_keeps_types_values_and_key_types(tmp_path):
    state = sample_state()
    checkpoint.save(tmp_path / "c.npz", state)
    got = checkpoint.load(tmp_path / "c.npz")
    assert got["epoch"] == 3 and got["shape"] == (3, 32, 32) and got["note"] is None and got["scalar"] == 1.5
    w = got["model"]["conv1.weight"]
    assert isinstance(w, tc.Tensor) and w.dtype == np.float32
    assert np.array_equal(w.data, state["model"]["conv1.weight"].data)
    assert list(got["model"]) == ["conv1.weight", "fc.bias"]            # order kept
    assert list(got["optimizer"]["state"]) == [0, 1]                    # int keys stay ints
    assert np.array_equal(got["optimizer"]["state"][0]["momentum_buffer"], np.arange(6.0))
    assert got["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert got["rng"] == state["rng"]                                    # 128-bit PCG64 state exactly
    assert np.isnan(got["history"][0]["loss"])


def test_unstorable_objects_are_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="cannot store a set"):
        checkpoint.save(tmp_path / "c.npz", {"bad": {1, 2}})
    assert os.listdir(tmp_path) == []


def test_failure_during_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"epoch": 1, "w": np.ones(1000)})
    before = path.read_bytes()

    def savez_then_fail(f, **members):
        f.write(b"PK\x03\x04 half a zip file")                         # a partial write, then the disk is full
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, {"epoch": 2, "w": np.zeros(1000)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]                            # no temporary file left behind
    assert checkpoint.load(path)["epoch"] == 1


def test_failure_at_fsync_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"epoch": 1})

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        checkpoint.save(path, {"epoch": 2})
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1 and os.listdir(tmp_path) == ["c.npz"]


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, sample_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} cannot be read: it is truncated, corrupt"):
        checkpoint.load(path)


def test_corrupted_bytes_give_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"w": np.zeros(4096, dtype=np.float32)})    # stored uncompressed: flip a data byte
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(path)):
        checkpoint.load(path)


def test_other_npz_and_missing_file_are_named(tmp_path):
    other = tmp_path / "weights.npz"
    np.savez(other, w=np.zeros(3))
    with pytest.raises(CheckpointError, match=rf"checkpoint {other} cannot be read"):
        checkpoint.load(other)
    meta = tmp_path / "meta.npz"
    np.savez(meta, __meta__=np.array('{"format": "something-else"}'))
    with pytest.raises(CheckpointError, match=rf"{meta} is an .npz file but not a tinyconv checkpoint"):
        checkpoint.load(meta)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.npz")
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=str(text)):
        checkpoint.load(text)


def test_file_is_a_plain_npz_readable_by_numpy(tmp_path):
    checkpoint.save(tmp_path / "c.npz", {"model": {"w": tc.ones(2, 3)}})
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        assert sorted(z.namelist()) == ["__meta__.npy", "a0.npy"]
    with np.load(tmp_path / "c.npz") as npz:
        assert np.array_equal(npz["a0"], np.ones((2, 3), np.float32))


def test_check_model_state_lists_every_problem(tmp_path):
    model = nn.Module()
    model.weight = nn.Parameter(tc.zeros(4, 3))
    model.bias = nn.Parameter(tc.zeros(4))
    checkpoint.check_model_state("x.npz", model, {"weight": np.zeros((4, 3)), "bias": np.zeros(4)})
    with pytest.raises(CheckpointError) as err:
        checkpoint.check_model_state("x.npz", model, {"weight": np.zeros((5, 3)), "extra": np.zeros(1)},
                                     model_name="LeNet5")
    msg = str(err.value)
    assert msg.startswith("checkpoint x.npz (saved from LeNet5) does not fit the model Module")
    assert "weight: checkpoint (5, 3) vs model (4, 3)" in msg
    assert "missing keys: bias" in msg and "unexpected keys: extra" in msg
