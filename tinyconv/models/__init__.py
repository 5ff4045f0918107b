"""The model zoo: ``tinyconv.models.<name>(num_classes=1000, in_channels=3, **options)``.

One module per architecture family; each factory registers itself (``list_models()``, ``get_model(name)``).
"""
from .registry import get_model, list_models, register_model  # noqa: F401
from .lenet import lenet5  # noqa: F401
