"""The model zoo: ``tinyconv.models.<name>(num_classes=1000, in_channels=3, **options)``.

One module per architecture family; each factory registers itself (``list_models()``, ``get_model(name)``).
"""
from .registry import get_model, list_models, register_model  # noqa: F401
from .lenet import lenet5  # noqa: F401
from .alexnet import alexnet, alexnet_torchvision  # noqa: F401
from .overfeat import overfeat_accurate, overfeat_fast  # noqa: F401
from .vgg import (vgg11, vgg11_bn, vgg11_lrn, vgg11_lrn_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg16_c,  # noqa: F401
                  vgg16_c_bn, vgg19, vgg19_bn)
from .googlenet import googlenet, googlenet_torchvision  # noqa: F401
from .inception import inception_v2, inception_v3  # noqa: F401
from .inception_v4 import inception_resnet_v2, inception_v4  # noqa: F401
from .xception import xception  # noqa: F401
from .resnet import (resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d,  # noqa: F401
                     resnext101_32x8d, resnext101_64x4d, se_resnet50)
