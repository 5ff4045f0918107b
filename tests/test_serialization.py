"""tinyconv.save / tinyconv.load: tinyconv's own files, PyTorch .pth/.pt (zip and legacy) read without torch by
a restricted unpickler, .safetensors; hostile pickles refused; torch never imported on this path."""
import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import models, nn
from tinyconv.checkpoint import CheckpointError
from tinyconv.torch_format import UnsafePickleError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- a hand-built torch.save file, without torch --------------------------------------------------------------
class _Global:
    """A global written into a pickle by name (the module need not exist here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *a):
        raise AssertionError("never called while pickling")


class _FakeTensor:
    def __init__(self, key, array, offset=0, size=None, stride=None):
        self.key, self.array, self.offset = key, array, offset
        self.size = array.shape if size is None else size
        self.stride = tuple(s // array.itemsize for s in array.strides) if stride is None else stride

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (("storage", self.key, self.array), self.offset, tuple(self.size), tuple(self.stride), False,
                 collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):
    """Writes ``_Global`` as a GLOBAL opcode and tensors' storages as persistent ids, like torch.save."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_fake_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)
    dispatch[_Global] = save_fake_global

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == "storage":
            _, key, arr = obj
            kind = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
                    np.dtype(np.float64): "DoubleStorage"}[arr.dtype]
            return ("storage", _Global("torch", kind), key, "cpu", arr.size)
        return None


def write_torch_zip(path, obj, storages):
    """``obj`` holds ``_FakeTensor``s; ``storages`` maps key -> flat array."""
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, arr in storages.items():
            z.writestr(f"archive/data/{key}", arr.tobytes())
        z.writestr("archive/version", "3\n")


def test_save_load_round_trip_of_a_state_dict(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    tc.save(m.state_dict(), tmp_path / "m.pt")
    got = tc.load(tmp_path / "m.pt")
    assert list(got) == list(m.state_dict())
    m2 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    m2.load_state_dict(got)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), k
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_save_is_atomic(tmp_path, monkeypatch):
    tc.save({"a": np.ones(3)}, tmp_path / "s.pt")
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        tc.save({"a": np.zeros(3)}, tmp_path / "s.pt")
    assert np.array_equal(tc.load(tmp_path / "s.pt")["a"], np.ones(3))
    assert os.listdir(tmp_path) == ["s.pt"]


def test_hand_built_torch_zip_without_torch(tmp_path):
    w = np.arange(24, dtype=np.float32)
    steps = np.array([7], dtype=np.int64)
    obj = collections.OrderedDict(
        weight=_FakeTensor("0", w.reshape(2, 3, 4)),
        weight_t=_FakeTensor("0", w, offset=1, size=(3, 2), stride=(1, 4)),   # a strided view, same storage
        steps=_FakeTensor("1", steps, size=(), stride=()),
        meta={"epoch": 3, "names": ["a", "b"]})
    write_torch_zip(tmp_path / "w.pth", obj, {"0": w, "1": steps})
    got = tc.load(tmp_path / "w.pth")
    assert np.array_equal(got["weight"], w.reshape(2, 3, 4))
    assert np.array_equal(got["weight_t"], np.array([[1, 5], [2, 6], [3, 7]], np.float32))
    assert got["steps"].shape == () and got["steps"] == 7 and got["meta"] == {"epoch": 3, "names": ["a", "b"]}
    got["weight"][0, 0, 0] = 99                              # copies: views of one storage do not alias
    assert got["weight_t"][0, 0] == 1


def test_corrupt_torch_files_are_named(tmp_path):
    w = np.arange(6, dtype=np.float32)
    write_torch_zip(tmp_path / "big.pth", {"w": _FakeTensor("0", w, size=(4, 4), stride=(4, 1))}, {"0": w})
    with pytest.raises(CheckpointError, match=r"big\.pth.*outside its storage|outside its storage"):
        tc.load(tmp_path / "big.pth")
    write_torch_zip(tmp_path / "ok.pth", {"w": _FakeTensor("0", w)}, {"0": w})
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        tc.load(tmp_path / "cut.pth")
    (tmp_path / "junk.pth").write_bytes(b"hello world")
    with pytest.raises(CheckpointError, match="junk.pth"):
        tc.load(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        tc.load(tmp_path / "nope.pth")


class _Evil:
    """A pickle whose reduce writes a marker file (what a hostile checkpoint would do, harmlessly)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, layout):
    marker = tmp_path / "marker"
    payload = pickle.dumps({"w": _Evil(str(marker))}, protocol=2)
    pickle.loads(payload)                      # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pth"
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", payload)
    else:
        head = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
        path.write_bytes(head + payload)
    with pytest.raises(UnsafePickleError, match=r"global (__builtin__|builtins)\.exec"):
        tc.load(path)
    assert not marker.exists()


def test_load_refuses_weights_only_false(tmp_path):
    tc.save({"a": np.ones(1)}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="weights_only=False"):
        tc.load(tmp_path / "a.pt", weights_only=False)


def _randomise(torch, module):
    """Random weights *and* BatchNorm statistics, so every number in the file matters to the logits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) / np.sqrt(t[0].numel()))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))


TORCHVISION = [("resnet18", "resnet18", 32), ("squeezenet1_1", "squeezenet1_1", 64),
               ("mobilenet_v2", "mobilenet_v2", 32)]


@pytest.mark.parametrize("tv_name,tc_name,size", TORCHVISION)
@pytest.mark.parametrize("fmt", ["pth", "legacy", "safetensors"])
def test_torchvision_weights_give_torchvisions_logits(torch, tmp_path, tv_name, tc_name, size, fmt):
    torchvision = pytest.importorskip("torchvision")
    tm = getattr(torchvision.models, tv_name)().eval()
    _randomise(torch, tm)
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        st = pytest.importorskip("safetensors.torch")
        st.save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(path))
    else:
        torch.save(tm.state_dict(), path, _use_new_zipfile_serialization=fmt == "pth")
    m = models.get_model(tc_name).eval()
    m.load_state_dict(tc.load(path))
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    with tc.no_grad():
        got = m(tc.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_pth_dtypes_and_views_match_torch(torch, tmp_path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    sd = {"t": base.t(), "slice": base[1:3, ::2], "bf16": torch.randn(5).to(torch.bfloat16),
          "half": torch.randn(3).half(), "long": torch.arange(4), "bool": torch.tensor([True, False]),
          "scalar": torch.tensor(2.5), "nested": [torch.ones(2), {"x": torch.zeros(1, dtype=torch.int32)}]}
    for legacy in (False, True):
        torch.save(sd, tmp_path / "d.pt", _use_new_zipfile_serialization=not legacy)
        got = tc.load(tmp_path / "d.pt")
        for k in ("t", "slice", "half", "long", "bool", "scalar"):
            assert got[k].dtype == sd[k].numpy().dtype and np.array_equal(got[k], sd[k].numpy()), k
        assert got["bf16"].dtype == np.float32 and np.array_equal(got["bf16"], sd["bf16"].float().numpy())
        assert np.array_equal(got["nested"][1]["x"], np.zeros(1, np.int32))


_NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
import tinyconv as tc
from tinyconv import models
sd = tc.load(sys.argv[1])
m = models.get_model("resnet18").eval()
m.load_state_dict(sd)
if len(sys.argv) > 2:
    m.load_state_dict(tc.load(sys.argv[2]))
assert not [k for k in sys.modules if k == "torch" or k.startswith("torch.")]
try:
    import torch  # noqa: F401
except ImportError:
    print("ok", len(sd), "blocked")
"""


def test_loading_never_imports_torch(torch, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    tm = torchvision.models.resnet18()
    torch.save(tm.state_dict(), tmp_path / "r.pth")
    args = [str(tmp_path / "r.pth")]
    try:
        import safetensors.torch as st
        st.save_file(tm.state_dict(), str(tmp_path / "r.safetensors"))
        args.append(str(tmp_path / "r.safetensors"))
    except ImportError:
        pass
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, ".dev")]))
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "122", "blocked"]   # resnet18: 62 parameters, 60 buffers


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    from tinyconv.serialization import save_safetensors
    m = nn.Linear(3, 2)
    save_safetensors(m.state_dict(), tmp_path / "l.safetensors")
    got = tc.load(tmp_path / "l.safetensors")
    assert set(got) == {"weight", "bias"} and np.array_equal(got["weight"], m.weight.numpy())
    blob = (tmp_path / "l.safetensors").read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(blob[:8] + b"{" + b"x" * (len(blob) - 9))
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        tc.load(tmp_path / "bad.safetensors")
    assert struct.unpack("<Q", blob[:8])[0] < len(blob)
