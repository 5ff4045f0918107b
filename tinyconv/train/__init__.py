"""``tinyconv.train``: the training loop and what surrounds it, one file per concern.

- ``loop.py``: ``fit``, ``train_one_epoch``, ``evaluate`` (minibatch SGD, NaN checks, the epoch's record);
- ``checkpointing.py``: ``save_training_checkpoint`` / ``load_training_checkpoint`` (exact resume, the whole
  file checked before any state changes, ``OutputWriteError`` on a full disk);
- ``history.py``: ``write_history`` (JSON, CSV), ``format_record``, ``plot_history`` (curves as a PNG).
"""
from .checkpointing import (CHECKPOINT_NAME, OutputWriteError, load_training_checkpoint,  # noqa: F401
                            save_training_checkpoint, validate_training_checkpoint)
from .history import format_record, plot_history, write_history  # noqa: F401
from .loop import NonFiniteLossError, current_lr, evaluate, fit, train_one_epoch  # noqa: F401
