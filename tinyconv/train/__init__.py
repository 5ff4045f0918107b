"""``tinyconv.train``: the training loop (``fit``), checkpoints with exact resume, and the history."""
from .loop import *  # noqa: F401,F403
from .loop import (CHECKPOINT_NAME, NonFiniteLossError, current_lr, evaluate, fit, format_record,  # noqa: F401
                   load_training_checkpoint, plot_history, save_training_checkpoint, train_one_epoch,
                   write_history)
