"""The model registry: every factory decorated with ``@register_model`` is listed by ``list_models()``; a
factory with published ImageNet weights also takes ``weights=``/``progress=`` (``pretrained.py``)."""
from .pretrained import list_weights, with_weights

_MODELS = {}


def register_model(fn):
    """Register a model factory under its function name (``resnet50``, ``vgg16_bn``, ...)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    if list_weights(fn.__name__):
        fn = with_weights(fn)
    _MODELS[fn.__name__] = fn
    return fn


def list_models():
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def get_model(name, **kwargs):
    """Build a registered model by name: ``get_model('resnet18', num_classes=10)``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
