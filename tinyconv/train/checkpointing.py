"""Training checkpoints: save the whole training state after an epoch, restore it all or nothing.

A training checkpoint holds everything the next epoch depends on: model weights, optimiser state (momentum
buffers), scheduler state, the random generator and the data loader's shuffling state, plus the history.
``load_training_checkpoint`` first checks the whole file (every entry's type and the weights' names and
shapes) and only then changes the objects; should one of them still refuse its part, the ones already
changed are put back, so a bad checkpoint leaves model, optimiser, scheduler, loader and RNG as they were.

Writing can fail for reasons outside the program (a full disk, a quota, a read-only folder): the previous
checkpoint then stays intact (``checkpoint.atomic_write``) and ``save_training_checkpoint`` raises
``OutputWriteError``, an ``OSError`` whose message says in one paragraph what was kept and what to do.
"""
import copy
import errno
import os

import numpy as np

from .. import backend, checkpoint, threads
from ..core import Tensor

CHECKPOINT_NAME = "checkpoint.npz"


class OutputWriteError(OSError):
    """A checkpoint or the history of an epoch could not be written (full disk, ...); the previous
    checkpoint is intact, and the message says in one paragraph what was kept and how to go on.

    ``history`` holds the records of every finished epoch (also the one whose checkpoint failed), ``epoch``
    the epoch whose state was not saved, ``path`` the checkpoint's path.
    """

    def __init__(self, message, errno_=None, path=None, epoch=None, history=()):
        super().__init__(errno_, message)
        self.message, self.path, self.epoch, self.history = message, path, epoch, list(history)

    def __str__(self):
        return self.message


def save_training_checkpoint(path, model, optimizer, epoch, scheduler=None, train_loader=None, history=(),
                             extra=None):
    """Write the full training state after ``epoch`` completed epochs to ``path`` (atomically, on the host).

    An ``OSError`` while writing (e.g. ``ENOSPC``, a full disk) becomes ``OutputWriteError``.
    """
    state = {
        "epoch": int(epoch),
        "model_name": type(model).__name__,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": backend.get_rng_state(),
        "train_loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
        "history": list(history),
        "extra": extra,
        # the last bits of products of >= 2**26 multiply-adds depend on their BLAS thread count (threads.py)
        "threads": {"large_product_blas_threads": threads.large_product_threads()},
    }
    try:
        checkpoint.save(path, state)
    except OutputWriteError:
        raise
    except OSError as e:
        raise write_error(e, path, epoch, history) from None


def write_error(e, path, epoch, history, what="checkpoint"):
    """The ``OutputWriteError`` for an ``OSError`` ``e`` met while writing epoch ``epoch``'s ``what``
    (``'checkpoint'`` or ``'history'``) to ``path``: one paragraph, what failed, what was kept, what to do."""
    why = os.strerror(e.errno) if e.errno else str(e)
    hint = ("Free some space there (or choose another output folder)" if e.errno in (errno.ENOSPC, errno.EDQUOT)
            else "Fix the cause")
    if what == "checkpoint":
        previous = (f"the previous checkpoint (after epoch {epoch - 1}) is intact" if os.path.exists(path)
                    else "no earlier checkpoint exists")
        message = (f"the checkpoint after epoch {epoch} could not be written to {path}: {why} (errno {e.errno}). "
                   f"Nothing half-written was left behind: {previous}. {hint} and rerun with --resume (fit(..., "
                   f"resume=True)): training continues from the last checkpoint, so epoch {epoch} is trained "
                   f"again.")
    else:
        message = (f"the history after epoch {epoch} could not be written to {path}: {why} (errno {e.errno}). "
                   f"The checkpoint of epoch {epoch}, which holds the history too, was saved. {hint} and rerun "
                   f"with --resume: the history files are rewritten after the next epoch.")
    return OutputWriteError(message, e.errno, os.fspath(path), epoch, history)


# -- loading ------------------------------------------------------------------------------------------
def load_training_checkpoint(path, model, optimizer=None, scheduler=None, train_loader=None):
    """Restore what ``save_training_checkpoint`` wrote into the given objects; returns the state dict.

    The whole checkpoint is checked before anything changes: a checkpoint of another model, or one whose
    entries have the wrong types, raises ``CheckpointError`` naming the file (and the mismatched keys and
    shapes); the objects are then exactly as before the call.  Weights are copied onto the model's device
    (and the optimiser puts its state next to its parameters), so a checkpoint loads on the CPU or a GPU
    whichever wrote it.  The returned dict has ``epoch`` (completed epochs), ``history`` and ``extra``.
    """
    state = checkpoint.load(path)
    validate_training_checkpoint(path, state, model)
    saved = _snapshot(model, optimizer, scheduler, train_loader)
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if train_loader is not None and state["train_loader"] is not None:
            train_loader.load_state_dict(state["train_loader"])
        backend.set_rng_state(state["rng"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
        _restore(saved, model, optimizer, scheduler, train_loader)
        raise checkpoint.CheckpointError(f"checkpoint {path} does not fit this model, optimiser, scheduler or "
                                         f"data loader ({type(e).__name__}: {e}); nothing was changed") from None
    return state


def _bad(path, what):
    return checkpoint.CheckpointError(f"checkpoint {path} is not a valid training checkpoint: {what}")


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate_training_checkpoint(path, state, model):
    """Raise ``CheckpointError`` naming ``path`` unless ``state`` is a well-formed training checkpoint for
    ``model``: the entries' types, the weights' names and shapes, and a random state this NumPy accepts."""
    required = ("epoch", "model", "optimizer", "rng", "history")
    if not isinstance(state, dict) or any(k not in state for k in required):
        lacks = ", ".join(k for k in required if not isinstance(state, dict) or k not in state)
        raise checkpoint.CheckpointError(f"checkpoint {path} is not a training checkpoint (it lacks {lacks})")
    if not _is_int(state["epoch"]) or state["epoch"] < 0:
        raise _bad(path, f"'epoch' must be a count of epochs, got {state['epoch']!r}")
    if not isinstance(state["history"], list) or not all(isinstance(r, dict) for r in state["history"]):
        raise _bad(path, "'history' must be a list of per-epoch dicts")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        raise _bad(path, f"'model' must be a dict of named weights, got {type(weights).__name__}")
    for k, v in weights.items():
        if not (isinstance(v, Tensor) or isinstance(v, np.ndarray)) or v.dtype.kind not in "fiub":
            raise _bad(path, f"the weight {k!r} is a {type(v).__name__}"
                             f"{' of ' + str(v.dtype) if hasattr(v, 'dtype') else ''}, not a numeric array")
    name = state.get("model_name")
    if name is not None and not isinstance(name, str):
        raise _bad(path, f"'model_name' must be a string, got {type(name).__name__}")
    checkpoint.check_model_state(path, model, weights, name)
    _check_optimizer_state(path, state["optimizer"])
    held = state.get("threads")
    if held is not None and (not isinstance(held, dict) or not _is_int(held.get("large_product_blas_threads"))
                             or held["large_product_blas_threads"] < 1):
        raise _bad(path, f"'threads' must be {{'large_product_blas_threads': a positive int}}, got {held!r}")
    for key in ("scheduler", "train_loader"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise _bad(path, f"'{key}' must be a dict or None, got {type(state[key]).__name__}")
    _check_rng_state(path, state["rng"])


def _check_optimizer_state(path, opt):
    if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict) \
            or not isinstance(opt.get("param_groups"), list):
        raise _bad(path, "'optimizer' must be a dict with 'state' (a dict) and 'param_groups' (a list)")
    for i, group in enumerate(opt["param_groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) \
                or not all(_is_int(p) for p in group["params"]):
            raise _bad(path, f"optimizer parameter group {i} must be a dict whose 'params' is a list of indices")
        for k, v in group.items():
            if k != "params" and not (v is None or isinstance(v, (bool, int, float, str, tuple, list))):
                raise _bad(path, f"optimizer parameter group {i}: {k!r} is a {type(v).__name__}")
    for i, values in opt["state"].items():
        if not isinstance(values, dict):
            raise _bad(path, f"the optimizer state of parameter {i!r} must be a dict, got {type(values).__name__}")
        for k, v in values.items():
            if not (isinstance(v, (Tensor, np.ndarray, bool, int, float)) or v is None):
                raise _bad(path, f"the optimizer state {k!r} of parameter {i!r} is a {type(v).__name__}")


def _check_rng_state(path, rng):
    """The saved random state must fit a fresh generator of the kind the backend uses (a dry run)."""
    if not isinstance(rng, dict) or "bit_generator" not in rng:
        raise _bad(path, f"'rng' must be the dict of backend.get_rng_state(), got {type(rng).__name__}")
    for k in ("seed", "device_root"):
        if rng.get(k) is not None and not _is_int(rng[k]):
            raise _bad(path, f"rng {k!r} must be an integer or None, got {rng[k]!r}")
    trial = type(backend.host_rng().bit_generator)()
    try:
        trial.state = rng["bit_generator"]
    except Exception as e:  # NumPy raises TypeError, ValueError or KeyError for a malformed state
        raise _bad(path, f"its random state does not fit NumPy's {type(trial).__name__} "
                         f"({type(e).__name__}: {e})") from None


def _snapshot(model, optimizer, scheduler, train_loader):
    """Copies of the state that loading a checkpoint replaces, for ``_restore``."""
    return {
        "model": {k: Tensor(backend.get_array_module(v.data).array(v.data, copy=True))
                  for k, v in model.state_dict().items()},
        "optimizer": (optimizer.state, list(optimizer.param_groups)) if optimizer is not None else None,
        "scheduler": copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
        "train_loader": dict(vars(train_loader)) if hasattr(train_loader, "load_state_dict") else None,
        "rng": backend.get_rng_state(),
    }


def _restore(saved, model, optimizer, scheduler, train_loader):
    model.load_state_dict(saved["model"])
    if optimizer is not None:
        optimizer.state, optimizer.param_groups = saved["optimizer"]
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    if saved["train_loader"] is not None:
        vars(train_loader).update(saved["train_loader"])     # load_state_dict only reassigns attributes
    backend.set_rng_state(saved["rng"])
