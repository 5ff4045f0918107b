"""Pretrained ImageNet weights for the zoo: ``tinyconv.models.resnet50(weights="DEFAULT")``.

The files are torchvision's (the same URLs; torchvision's file names carry the first hex digits of the file's
SHA-256, which is checked after every download).  They are PyTorch ``.pth`` files, read without PyTorch by
``tinyconv.load``.  Downloads go to ``$TINYCONV_HOME/weights`` (default ``~/.cache/tinyconv/weights``),
streamed into a temporary file with a progress bar, hash-checked, then renamed: an interrupted download never
leaves a half file under the final name.  ``TINYCONV_OFFLINE=1`` forbids downloading.

Each weight set records the preprocessing it was trained with (``Weights.transforms()``: resize the shorter
side, centre crop, scale to [0, 1], normalise) and the ImageNet class names (``Weights.categories``).
GoogLeNet and Inception v3 were trained on inputs normalised with mean = std = 0.5 (torchvision re-normalises
them inside the model, ``transform_input=True``); here that is part of their preprocessing instead.
"""
import functools
import os
import re
from dataclasses import dataclass, field

import numpy as np

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# (tinyconv model, weights name, URL, resize, crop, interpolation, ImageNet top-1 %): torchvision's table
# (torchvision/models/*.py, the ``*_Weights`` enums).
_TABLE = [
    ("alexnet_torchvision", "IMAGENET1K_V1", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", 256, 224, "bilinear", 56.522),
    ("vgg11", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg11-8a719046.pth", 256, 224, "bilinear", 69.02),
    ("vgg11_bn", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg11_bn-6002323d.pth", 256, 224, "bilinear", 70.37),
    ("vgg13", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg13-19584684.pth", 256, 224, "bilinear", 69.928),
    ("vgg13_bn", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth", 256, 224, "bilinear", 71.586),
    ("vgg16", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg16-397923af.pth", 256, 224, "bilinear", 71.592),
    ("vgg16_bn", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", 256, 224, "bilinear", 73.36),
    ("vgg19", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", 256, 224, "bilinear", 72.376),
    ("vgg19_bn", "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth", 256, 224, "bilinear", 74.218),
    ("googlenet_torchvision", "IMAGENET1K_V1", "https://download.pytorch.org/models/googlenet-1378be20.pth", 256, 224, "bilinear", 69.778),
    ("inception_v3", "IMAGENET1K_V1", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", 342, 299, "bilinear", 77.294),
    ("resnet18", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnet18-f37072fd.pth", 256, 224, "bilinear", 69.758),
    ("resnet34", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnet34-b627a593.pth", 256, 224, "bilinear", 73.314),
    ("resnet50", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnet50-0676ba61.pth", 256, 224, "bilinear", 76.13),
    ("resnet50", "IMAGENET1K_V2", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 232, 224, "bilinear", 80.858),
    ("resnet101", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnet101-63fe2227.pth", 256, 224, "bilinear", 77.374),
    ("resnet101", "IMAGENET1K_V2", "https://download.pytorch.org/models/resnet101-cd907fc2.pth", 232, 224, "bilinear", 81.886),
    ("resnet152", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnet152-394f9c45.pth", 256, 224, "bilinear", 78.312),
    ("resnet152", "IMAGENET1K_V2", "https://download.pytorch.org/models/resnet152-f82ba261.pth", 232, 224, "bilinear", 82.284),
    ("resnext50_32x4d", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth", 256, 224, "bilinear", 77.618),
    ("resnext50_32x4d", "IMAGENET1K_V2", "https://download.pytorch.org/models/resnext50_32x4d-1a0047aa.pth", 232, 224, "bilinear", 81.198),
    ("resnext101_32x8d", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth", 256, 224, "bilinear", 79.312),
    ("resnext101_32x8d", "IMAGENET1K_V2", "https://download.pytorch.org/models/resnext101_32x8d-110c445d.pth", 232, 224, "bilinear", 82.834),
    ("resnext101_64x4d", "IMAGENET1K_V1", "https://download.pytorch.org/models/resnext101_64x4d-173b62eb.pth", 232, 224, "bilinear", 83.246),
    ("mobilenet_v2", "IMAGENET1K_V1", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", 256, 224, "bilinear", 71.878),
    ("mobilenet_v2", "IMAGENET1K_V2", "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth", 232, 224, "bilinear", 72.154),
    ("efficientnet_b0", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth", 256, 224, "bicubic", 77.692),
    ("efficientnet_b1", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth", 256, 240, "bicubic", 78.642),
    ("efficientnet_b1", "IMAGENET1K_V2", "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth", 255, 240, "bilinear", 79.838),
    ("efficientnet_b2", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b2_rwightman-c35c1473.pth", 288, 288, "bicubic", 80.608),
    ("efficientnet_b3", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b3_rwightman-b3899882.pth", 320, 300, "bicubic", 82.008),
    ("efficientnet_b4", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b4_rwightman-23ab8bcd.pth", 384, 380, "bicubic", 83.384),
    ("efficientnet_b5", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b5_lukemelas-1a07897c.pth", 456, 456, "bicubic", 83.444),
    ("efficientnet_b6", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b6_lukemelas-24a108a5.pth", 528, 528, "bicubic", 84.008),
    ("efficientnet_b7", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b7_lukemelas-c5b4e57e.pth", 600, 600, "bicubic", 84.122),
    ("efficientnet_v2_s", "IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_v2_s-dd5fe13b.pth", 384, 384, "bilinear", 84.228),
    ("squeezenet1_0", "IMAGENET1K_V1", "https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth", 256, 224, "bilinear", 58.092),
    ("squeezenet1_1", "IMAGENET1K_V1", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", 256, 224, "bilinear", 58.178),
    ("shufflenet_v2_x0_5", "IMAGENET1K_V1", "https://download.pytorch.org/models/shufflenetv2_x0.5-f707e7126e.pth", 256, 224, "bilinear", 60.552),
    ("shufflenet_v2_x1_0", "IMAGENET1K_V1", "https://download.pytorch.org/models/shufflenetv2_x1-5666bf0f80.pth", 256, 224, "bilinear", 69.362),
    ("convnext_tiny", "IMAGENET1K_V1", "https://download.pytorch.org/models/convnext_tiny-983f1562.pth", 236, 224, "bilinear", 82.52),
    ("densenet121", "IMAGENET1K_V1", "https://download.pytorch.org/models/densenet121-a639ec97.pth", 256, 224, "bilinear", 74.434),
    ("densenet169", "IMAGENET1K_V1", "https://download.pytorch.org/models/densenet169-b2777c0a.pth", 256, 224, "bilinear", 75.6),
    ("densenet201", "IMAGENET1K_V1", "https://download.pytorch.org/models/densenet201-c1103571.pth", 256, 224, "bilinear", 76.896),
]


@functools.lru_cache(maxsize=1)
def imagenet_categories():
    """The 1000 ImageNet class names, in the order of the classifiers' outputs (torchvision's ``_meta.py``)."""
    with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt"), encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f]
    assert len(names) == 1000, "imagenet_classes.txt is damaged"
    return names


@dataclass(frozen=True)
class Weights:
    """One pretrained weight set: where it lives and how its inputs must be prepared."""
    model: str
    name: str
    url: str
    resize_size: int
    crop_size: int
    interpolation: str
    acc1: float = None
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[1]

    @property
    def sha256_prefix(self):
        """The hash prefix in torchvision's file name (``resnet50-0676ba61.pth`` -> ``0676ba61``)."""
        return re.search(r"-([a-f0-9]+)\.", self.filename).group(1)

    @property
    def categories(self):
        return imagenet_categories()

    def transforms(self):
        """The preprocessing: ``fn(image) -> Tensor (3, crop, crop)`` (see ``tinyconv.models.preprocess``)."""
        from .preprocess import ImageClassification
        return ImageClassification(self.crop_size, self.resize_size, self.mean, self.std, self.interpolation)


_WEIGHTS = {}
for _m, _n, _url, _resize, _crop, _interp, _acc in _TABLE:
    _norm = dict(mean=(0.5,) * 3, std=(0.5,) * 3) if _m in ("googlenet_torchvision", "inception_v3") else {}
    _WEIGHTS.setdefault(_m, {})[_n] = Weights(_m, _n, _url, _resize, _crop, _interp, _acc, **_norm)


def list_weights(model=None):
    """``{model: [weight names]}``, or the weight names of one model."""
    if model is not None:
        return list(_WEIGHTS.get(model, {}))
    return {m: list(w) for m, w in _WEIGHTS.items()}


def get_weights(model, weights="DEFAULT"):
    """The ``Weights`` of ``model`` named ``weights`` (``"DEFAULT"`` = the most accurate; ``"IMAGENET1K_V1"``;
    torchvision's ``"ResNet50_Weights.IMAGENET1K_V2"`` spelling works too)."""
    if isinstance(weights, Weights):
        return weights
    table = _WEIGHTS.get(model)
    if not table:
        raise ValueError(f"no pretrained weights are published for {model!r}; models with weights: "
                         f"{', '.join(sorted(_WEIGHTS))}")
    name = str(weights).rsplit(".", 1)[-1]
    if name == "DEFAULT":
        return max(table.values(), key=lambda w: w.acc1 or 0)
    if name not in table:
        raise ValueError(f"{model} has no weights {weights!r}; available: DEFAULT, {', '.join(table)}")
    return table[name]


def weights_dir():
    home = os.environ.get("TINYCONV_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "tinyconv")
    return os.path.join(home, "weights")


def _hash_ok(path, prefix):
    from ..data.download import file_digest
    return file_digest(path, "sha256").startswith(prefix)


def download_weights(w, folder=None, progress=True, attempts=3, timeout=60.0):
    """The local path of ``w``'s file, downloading it first unless a copy with the right hash is cached."""
    from ..data.download import DownloadError, download_url
    folder = folder or weights_dir()
    path = os.path.join(folder, w.filename)
    if os.path.exists(path) and _hash_ok(path, w.sha256_prefix):
        return path
    unverified = path + ".unverified"
    try:
        download_url(w.url, unverified, attempts=attempts, timeout=timeout, progress=progress)
        if not _hash_ok(unverified, w.sha256_prefix):
            raise DownloadError(f"{w.url}: the file's SHA-256 does not start with {w.sha256_prefix} (corrupt "
                                f"download or tampered file); nothing was kept")
        os.replace(unverified, path)
    finally:
        if os.path.exists(unverified):
            os.remove(unverified)
    return path


def _densenet_keys(state):
    """Old DenseNet files name ``norm.1``/``conv.2`` what the model calls ``norm1``/``conv2`` (as torchvision
    renames them when loading)."""
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
                         r"running_var))$")
    return {(m.group(1) + m.group(2) if (m := pattern.match(k)) else k): v for k, v in state.items()}


def load_pretrained(model, name, weights, progress=True):
    """Fill ``model`` (built by factory ``name``) with the weight set ``weights``; return the model in eval mode."""
    from ..serialization import load
    w = get_weights(name, weights)
    state = load(download_weights(w, progress=progress))
    if name.startswith("densenet"):
        state = _densenet_keys(state)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    model.load_state_dict(state)
    model.weights = w
    return model.eval()


def with_weights(factory):
    """Give a registered factory the ``weights=``/``progress=`` arguments when weights exist for it."""
    name = factory.__name__

    @functools.wraps(factory)
    def build(*args, weights=None, progress=True, **kwargs):
        if weights is None:
            return factory(*args, **kwargs)
        get_weights(name, weights)            # a bad name fails before anything is built or downloaded
        if kwargs.get("num_classes", 1000) != 1000 or kwargs.get("in_channels", 3) != 3:
            raise ValueError(f"{name}(weights=...) has 1000 ImageNet classes and 3 input channels; got "
                             f"num_classes={kwargs.get('num_classes', 1000)}, in_channels="
                             f"{kwargs.get('in_channels', 3)} (load the weights, then replace the classifier)")
        from ..nn.init import skip_init
        with skip_init():                     # every weight is overwritten by the file
            model = factory(*args, **kwargs)
        return load_pretrained(model, name, weights, progress)
    return build
