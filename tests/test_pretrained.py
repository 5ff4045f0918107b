"""Pretrained weights: ``models.<name>(weights=...)`` downloads torchvision's file (here from a local HTTP server on
127.0.0.1, never the network), checks the SHA-256 prefix, writes atomically, retries; the preprocessing; the
ImageNet class names; examples/classify.py."""
import dataclasses
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import models
from tinyconv.data.download import DownloadError
from tinyconv.models import pretrained
from tinyconv.models.pretrained import Weights, get_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Server:
    """Serves ``files`` {name: bytes}; ``cut[name] = n`` makes the next n requests for it die half-way."""

    def __init__(self):
        self.files, self.cut, self.hits = {}, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.hits.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut.get(name, 0) > 0:
                    server.cut[name] -= 1
                    self.wfile.write(body[: len(body) // 2])          # then the connection closes early
                    return
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYCONV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYCONV_OFFLINE", raising=False)
    return tmp_path / "home"


def _serve_squeezenet(server, monkeypatch, tamper=False):
    """A squeezenet1_1 state dict saved as a .pth (hand-made via tc.save's sibling: a torch zip if torch is here,
    else tinyconv's own format) under a torchvision-style name carrying its hash prefix."""
    m = models.squeezenet1_1()
    path_bytes = _state_bytes(m)
    digest = hashlib.sha256(path_bytes).hexdigest()
    name = f"squeezenet1_1-{digest[:8]}.pth"
    server.files[name] = path_bytes[:-1] + bytes([path_bytes[-1] ^ 1]) if tamper else path_bytes
    w = dataclasses.replace(get_weights("squeezenet1_1", "IMAGENET1K_V1"), url=server.url + name)
    monkeypatch.setitem(pretrained._WEIGHTS["squeezenet1_1"], "IMAGENET1K_V1", w)
    return m, w


def _state_bytes(m):
    import io
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "w.pth")
        try:
            import torch
            torch.save({k: torch.from_numpy(v.numpy().copy()) for k, v in m.state_dict().items()}, p)
        except ImportError:
            tc.save(m.state_dict(), p)
        return io.open(p, "rb").read()


def test_weights_download_check_and_load(server, home, monkeypatch):
    m, w = _serve_squeezenet(server, monkeypatch)
    got = models.squeezenet1_1(weights="IMAGENET1K_V1", progress=False)
    assert got.weights is w and not got.training
    for (k, a), b in zip(m.state_dict().items(), got.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), k
    cached = home / "weights" / w.filename
    assert cached.exists() and os.listdir(home / "weights") == [w.filename]
    models.squeezenet1_1(weights="SqueezeNet1_1_Weights.IMAGENET1K_V1", progress=False)
    assert server.hits == [w.filename]                  # the second call used the cached, re-verified copy


def test_interrupted_download_is_retried_and_leaves_no_partial_file(server, home, monkeypatch):
    _, w = _serve_squeezenet(server, monkeypatch)
    server.cut[w.filename] = 1
    models.squeezenet1_1(weights="IMAGENET1K_V1", progress=False)
    assert server.hits == [w.filename, w.filename]
    server.cut[w.filename] = 5
    (home / "weights" / w.filename).unlink()
    monkeypatch.setattr(pretrained, "download_weights", _no_retry(pretrained.download_weights))
    with pytest.raises(DownloadError, match="connection closed early|expected"):
        models.squeezenet1_1(weights="IMAGENET1K_V1", progress=False)
    assert os.listdir(home / "weights") == []


def _no_retry(fn):
    return lambda w, progress=True, **kw: fn(w, progress=progress, attempts=1)


def test_wrong_hash_is_refused_and_nothing_is_kept(server, home, monkeypatch):
    _serve_squeezenet(server, monkeypatch, tamper=True)
    with pytest.raises(DownloadError, match="SHA-256"):
        models.squeezenet1_1(weights="IMAGENET1K_V1", progress=False)
    assert os.listdir(home / "weights") == []


def test_a_corrupted_cached_copy_is_downloaded_again(server, home, monkeypatch):
    _, w = _serve_squeezenet(server, monkeypatch)
    (home / "weights").mkdir(parents=True)
    (home / "weights" / w.filename).write_bytes(b"garbage")
    models.squeezenet1_1(weights="IMAGENET1K_V1", progress=False)
    assert server.hits == [w.filename]


def test_offline_and_bad_arguments(home, monkeypatch):
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    with pytest.raises(DownloadError, match="TINYCONV_OFFLINE"):
        models.resnet18(weights="DEFAULT", progress=False)
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        models.resnet18(weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="num_classes=10"):
        models.resnet18(weights="DEFAULT", num_classes=10)
    assert "weights" not in models.lenet5.__code__.co_varnames   # only models torchvision publishes get weights=


def test_weight_table():
    table = pretrained.list_weights()
    assert len(table) == 37 and len(pretrained.imagenet_categories()) == 1000
    assert pretrained.imagenet_categories()[:2] == ["tench", "goldfish"]
    assert get_weights("resnet50").name == "IMAGENET1K_V2" and get_weights("resnet50").sha256_prefix == "11ad3fa6"
    assert get_weights("shufflenet_v2_x0_5").sha256_prefix == "f707e7126e"
    for model, names in table.items():
        assert model in models.list_models()
        for n in names:
            w = get_weights(model, n)
            assert w.url.startswith("https://download.pytorch.org/models/") and len(w.sha256_prefix) >= 8


def test_preprocessing_matches_torchvision(torch):
    pytest.importorskip("torchvision")
    PIL = pytest.importorskip("PIL.Image")
    from torchvision.models import EfficientNet_B0_Weights, ResNet50_Weights
    # a smooth picture (photographs are; on pixel noise PIL's 8-bit intermediate clipping of bicubic overshoot
    # differs by design)
    yy, xx = np.mgrid[0:180, 0:250] / 40.0
    img = np.stack([np.sin(yy) * np.cos(xx), np.cos(yy + xx), np.sin(2 * xx)], axis=2)
    img = ((img + 1) * 127.5).astype(np.uint8)
    for tv, ours in ((ResNet50_Weights.IMAGENET1K_V2, get_weights("resnet50", "IMAGENET1K_V2")),
                     (EfficientNet_B0_Weights.IMAGENET1K_V1, get_weights("efficientnet_b0"))):
        want = tv.transforms()(PIL.fromarray(img)).numpy()
        got = ours.transforms()(img).numpy()
        assert got.shape == want.shape
        # PIL rounds the resized image to uint8: within ~2 grey levels, in normalised units
        assert np.abs(got - want).max() < 2.5 / 255 / 0.224


def test_classify_example_prints_top5(server, home, monkeypatch, tmp_path):
    _, w = _serve_squeezenet(server, monkeypatch)
    models.squeezenet1_1(weights="IMAGENET1K_V1", progress=False)       # into the cache
    img = tmp_path / "img.npy"
    np.save(img, (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, ".dev")]),
               TINYCONV_HOME=str(home), TINYCONV_OFFLINE="1")
    code = ("import runpy, sys, dataclasses; from tinyconv.models import pretrained as p; "
            f"p._WEIGHTS['squeezenet1_1']['IMAGENET1K_V1'] = dataclasses.replace("
            f"p._WEIGHTS['squeezenet1_1']['IMAGENET1K_V1'], url={w.url!r}); "
            f"sys.argv = ['classify.py', {str(img)!r}, '--model', 'squeezenet1_1', '--weights', 'IMAGENET1K_V1']; "
            f"runpy.run_path({os.path.join(ROOT, 'examples', 'classify.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("  ")]
    assert len(lines) == 5
    names = pretrained.imagenet_categories()
    assert all(any(n in line for n in names) for line in lines)
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "classify.py"), str(tmp_path / "no.png")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no.png" in bad.stderr and "Traceback" not in bad.stderr
