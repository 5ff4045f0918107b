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
from .mobilenet import mobilenet_v1, mobilenet_v2  # noqa: F401
from .efficientnet import (compound_scaled, efficientnet_b0, efficientnet_b1, efficientnet_b2,  # noqa: F401
                           efficientnet_b3, efficientnet_b4, efficientnet_b5, efficientnet_b6, efficientnet_b7,
                           efficientnet_v2_s)
from .squeezenet import squeezenet1_0, squeezenet1_1  # noqa: F401
from .shufflenet import shufflenet_v1_g3, shufflenet_v2_x0_5, shufflenet_v2_x1_0  # noqa: F401
from .convnext import convnext_tiny  # noqa: F401
from .densenet import densenet121, densenet169, densenet201, densenet264  # noqa: F401
from .nasnet import nasnet_a_large  # noqa: F401
