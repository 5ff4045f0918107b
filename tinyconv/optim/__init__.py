"""``tinyconv.optim``: optimizers with PyTorch's update rules, arguments and state dicts; LR schedules."""
from . import lr_scheduler  # noqa: F401
from .adadelta import Adadelta  # noqa: F401
from .adagrad import Adagrad  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401
from .sequential import SequentialLR  # noqa: F401
from .one_cycle import OneCycleLR  # noqa: F401
from .warm_restarts import CosineAnnealingWarmRestarts  # noqa: F401

# PyTorch's paths (torch.optim.lr_scheduler.OneCycleLR, ...): each schedule beyond the basic ones has its own file
lr_scheduler.OneCycleLR = OneCycleLR
lr_scheduler.CosineAnnealingWarmRestarts = CosineAnnealingWarmRestarts
lr_scheduler.SequentialLR = SequentialLR
