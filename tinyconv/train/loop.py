"""The training loop: ``fit``, ``train_one_epoch`` and ``evaluate`` (checkpoints: ``checkpointing.py``,
the history and its plots: ``history.py``).

One epoch of ``fit`` is the minibatch SGD of the lectures:

    for (x, y) in train_loader:          # a shuffled pass over the training set
        loss = loss_fn(model(x), y)      # forward
        optimizer.zero_grad()
        loss.backward()                  # backpropagation
        optimizer.step()                 # w <- w - lr * dL/dw  (plus momentum, weight decay, ...)

followed by ``evaluate`` on the test set, one ``scheduler.step()`` (schedulers are stepped once per epoch,
as PyTorch's ``StepLR``/``CosineAnnealingLR`` expect), a record in the history (JSON and CSV) and a
checkpoint.  The checkpoint holds everything the next epoch depends on: model weights, optimiser state
(momentum buffers), scheduler state, the random generator and the data loader's shuffling state.  So a
run that is killed and resumed (``resume=True``) from its last checkpoint ends with exactly the same
weights, bit for bit, as one that never stopped.

A training loss that becomes NaN or infinite stops training before the bad step is applied
(``NonFiniteLossError``, naming the epoch and the step); a non-finite test loss stops it too, before that
epoch is checkpointed.  Either way the last checkpoint is left as it was.  When a checkpoint cannot be
written (a full disk) the previous one stays intact, the history is still written where possible, and
``OutputWriteError`` says so.
"""
import contextlib
import math
import os
import sys
import time

from .. import backend, threads
from ..core import Tensor, no_grad
from ..distributed import comm as dist
from ..metrics import true_class_rank
from ..optim.lr_scheduler import ReduceLROnPlateau
from .checkpointing import (CHECKPOINT_NAME, OutputWriteError, load_training_checkpoint,  # noqa: F401
                            save_training_checkpoint, write_error)
from .history import format_record, write_history


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped before applying that step."""


# -- small helpers ------------------------------------------------------------------------------------
def _to_device(x, device):
    """A batch element (Tensor or array) as a Tensor on ``device`` (no copy if it is already there)."""
    if isinstance(x, Tensor):
        return x if x.device == device else Tensor(backend.to_device(x.data, device))
    return Tensor(backend.to_device(x, device))


def _progress_bar(iterable, enabled, desc, total=None):
    """A tqdm bar over ``iterable``, shown only when ``enabled`` and stderr is a terminal."""
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))


def _len_or_none(loader):
    try:
        return len(loader)
    except TypeError:
        return None


def current_lr(optimizer):
    """The learning rate of the optimiser's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])


# -- evaluation ---------------------------------------------------------------------------------------
def evaluate(model, loader, loss_fn, device=None, topk=(1, 5), progress=False):
    """Mean loss and top-k accuracies of ``model`` over ``loader``, in evaluation mode, without gradients.

    ``loss_fn(output, target)`` must return the mean over the batch.  Returns
    ``{"loss": float, "acc1": float, "acc5": float, "samples": int}`` (one ``acc<k>`` per k in ``topk``;
    accuracies are fractions in [0, 1]).  The model's training/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, [0] * len(topk), 0
    try:
        with no_grad():
            for x, y in _progress_bar(loader, progress, "eval", _len_or_none(loader)):
                if device is not None:
                    x, y = _to_device(x, device), _to_device(y, device)
                out = model(x)
                n = len(y)
                # summed where the data lives (on a GPU: without waiting for it), read once at the end
                total_loss = total_loss + loss_fn(out, y).data.astype("float64") * n
                rank = true_class_rank(out.data, y.data if isinstance(y, Tensor) else y)
                correct = [c + (rank < k).sum() for c, k in zip(correct, topk)]
                seen += n
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    result = {"loss": float(total_loss) / seen}
    result.update({f"acc{k}": int(c) / seen for k, c in zip(topk, correct)})
    result["samples"] = seen
    return result


def train_one_epoch(model, loader, optimizer, loss_fn, device, epoch, progress=True, on_step_end=None,
                    check_every=None):
    """One pass of minibatch SGD over ``loader``; returns loss, accuracy and throughput of the epoch.

    ``epoch`` (1-based) is only used in messages and passed to ``on_step_end(epoch, step, loss)``, called
    after every optimiser step (``step`` is 1-based).  Raises ``NonFiniteLossError`` on a NaN/inf loss.

    The NaN check and the host: on the CPU the loss is read after every forward pass and a NaN stops
    training before the step that would spread it into the weights.  On a GPU, reading the loss makes the
    host wait for the device, which then idles while Python queues the next step; so there the losses and
    correct counts are summed on the device and read every ``check_every`` steps (default 50, and at the end
    of the epoch).  A NaN is then reported up to ``check_every - 1`` steps late, with the weights already
    touched, but the last checkpoint (written after each epoch) is intact either way.  ``on_step_end``
    receives the step's loss as a Python float, which costs one wait per step: pass it only when needed.
    """
    model.train()
    every = check_every or (1 if device == "cpu" else 50)
    sums = _EpochSums()
    start = time.perf_counter()
    bar = _progress_bar(loader, progress, f"epoch {epoch}", _len_or_none(loader))
    checked = 0
    step = 0
    for step, (x, y) in enumerate(bar, start=1):
        x, y = _to_device(x, device), _to_device(y, device)
        out = model(x)
        loss = loss_fn(out, y)
        if every == 1:
            value = float(loss.item())
            if not math.isfinite(value):
                bar.close()
                raise NonFiniteLossError(f"the training loss became {value} at epoch {epoch}, step {step}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sums.add(loss, out, y)
        if step % every == 0:
            sums.check(bar, epoch, checked + 1, step)
            checked = step
        if step % 10 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{sums.loss / sums.seen:.4f}", acc=f"{sums.correct / sums.seen:.2%}",
                            refresh=False)
        if on_step_end is not None:
            on_step_end(epoch, step, float(loss.item()))
    if step > checked:
        sums.check(bar, epoch, checked + 1, step)
    elapsed = time.perf_counter() - start
    if sums.seen == 0:
        raise ValueError("fit: the training loader yielded no batches")
    return {"train_loss": sums.loss / sums.seen, "train_acc": sums.correct / sums.seen,
            "images_per_s": sums.seen / elapsed, "train_time_s": elapsed}


class _EpochSums:
    """Running sums of the batch losses (times batch size) and of the correct predictions, kept as arrays on
    the loss's device so that adding a batch never waits for it; ``loss`` and ``correct`` read them."""

    def __init__(self):
        self._loss = self._correct = None
        self.seen = 0

    def add(self, loss, out, y):
        n = len(y)
        batch_loss = loss.data.astype("float64") * n
        right = (true_class_rank(out.data, y.data) < 1).sum()
        self._loss = batch_loss if self._loss is None else self._loss + batch_loss
        self._correct = right if self._correct is None else self._correct + right
        self.seen += n

    loss = property(lambda self: 0.0 if self._loss is None else float(self._loss))
    correct = property(lambda self: 0 if self._correct is None else int(self._correct))

    def check(self, bar, epoch, first, last):
        """Raise ``NonFiniteLossError`` if a loss of steps ``first..last`` of ``epoch`` was NaN/inf."""
        value = self.loss
        if not math.isfinite(value):
            bar.close()
            steps = f"step {last}" if first == last else f"one of steps {first}-{last}"
            raise NonFiniteLossError(f"the training loss became {value} at epoch {epoch}, {steps}")


# -- the loop -----------------------------------------------------------------------------------------
def fit(model, train_loader, test_loader, optimizer, loss_fn, epochs, scheduler=None, device="cpu",
        checkpoint_dir=None, resume=False, history_path=None, progress=True, log=print,
        on_step_end=None, extra=None, check_every=None):
    """Train ``model`` for ``epochs`` epochs in total; returns the history (a list of per-epoch dicts).

    Each record: ``epoch`` (1-based), ``lr``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc1``,
    ``test_acc5``, ``images_per_s`` (training throughput), ``epoch_time_s`` (training and evaluation).

    - ``checkpoint_dir``: a checkpoint ``checkpoint.npz`` is written there after every epoch (atomically).
    - ``resume``: ``True`` continues from ``checkpoint_dir/checkpoint.npz`` when it exists (or starts
      afresh, saying so); a path resumes from that file.  ``epochs`` is the total, so resuming a finished
      run does nothing.  A checkpoint of another model raises ``checkpoint.CheckpointError``.
    - ``history_path``: the history is written to ``<history_path>.json`` and ``.csv`` after every epoch.
    - ``progress``: tqdm progress bars (only when stderr is a terminal); ``log``: called with one summary
      line per epoch (``None`` for silence); ``on_step_end(epoch, step, loss)``: called after each step.
    - ``extra``: any JSON-like data (e.g. the command-line arguments) stored in the checkpoint.
    - ``scheduler``: stepped once per epoch, after the evaluation; a ``ReduceLROnPlateau`` is given the
      test loss in its ``'min'`` mode and the test top-1 accuracy in ``'max'`` mode.
    - ``check_every``: steps between NaN checks (default: every step on the CPU, every 50 on a GPU, where each
      check waits for the device; see ``train_one_epoch``).

    Under MPI (``tinyconv.distributed.init()``, the model wrapped in ``DistributedDataParallel``, the loader
    given a ``DistributedSampler``): rank 0 alone logs and writes the checkpoint and history, every rank resumes
    from that checkpoint, and each record's train loss and accuracy are averaged over ranks (images/s summed).

    Raises ``NonFiniteLossError`` if the training or test loss becomes NaN/inf (the last checkpoint stays as it
    was), ``OutputWriteError`` (an ``OSError``) if a checkpoint or the history cannot be written, e.g. on a full
    disk: the previous checkpoint is intact and the error's ``history`` holds every finished epoch.
    """
    device = backend.normalize_device(device)
    model.to(device)
    log = (log if dist.is_main_process() else None) or (lambda line: None)  # MPI: rank 0 logs, all resume
    ckpt_path = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir is not None else None
    resume_path = resume if isinstance(resume, (str, os.PathLike)) else (ckpt_path if resume else None)
    if resume and resume_path is None:
        raise ValueError("fit: resume=True needs checkpoint_dir (or pass the checkpoint's path as resume)")
    history, start = [], 0
    with contextlib.ExitStack() as held:
        if resume_path is not None:
            if os.path.exists(resume_path):
                state = load_training_checkpoint(resume_path, model, optimizer, scheduler, train_loader)
                history, start = list(state["history"]), state["epoch"]
                log(f"resumed from {resume_path} after epoch {start}")
                held.enter_context(_same_large_products(state, log))
            else:
                log(f"no checkpoint at {resume_path}: starting from epoch 1")
        return _epochs(model, train_loader, test_loader, optimizer, loss_fn, epochs, scheduler, device, ckpt_path,
                       history_path, progress, log, on_step_end, extra, check_every, history, start)


def _same_large_products(state, log):
    """Keep the BLAS thread count of the checkpoint's large products (their last bits depend on it), so that a
    run resumed under another thread cap still ends bit for bit where the uninterrupted one would."""
    n = (state.get("threads") or {}).get("large_product_blas_threads")
    if n is None or n == threads.large_product_threads():
        return contextlib.nullcontext()
    log(f"note: the checkpoint's run gave matrix products of >= 2**26 multiply-adds {n} BLAS thread(s); they keep "
        f"that count (this process would give them {threads.large_product_threads()}) so the resumed run is exact")
    return threads.large_products_on(n)


def _epochs(model, train_loader, test_loader, optimizer, loss_fn, epochs, scheduler, device, ckpt_path, history_path,
            progress, log, on_step_end, extra, check_every, history, start):
    """Epochs ``start + 1 .. epochs`` of ``fit`` (see there)."""
    main = dist.is_main_process()  # under MPI rank 0 alone shows progress and writes
    for epoch in range(start + 1, epochs + 1):
        backend.seed_device_rng(epoch)  # GPU dropout masks from (seed, epoch): resumable (see backend)
        t0 = time.perf_counter()
        lr = current_lr(optimizer)
        try:
            record = {"epoch": epoch, "lr": lr}
            record.update(dist.average_over_ranks(  # the global batch's loss and accuracy under MPI
                train_one_epoch(model, train_loader, optimizer, loss_fn, device, epoch, progress and main,
                                on_step_end, check_every), mean=("train_loss", "train_acc"), total=("images_per_s",)))
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"training stopped: {e}; {_kept(ckpt_path, epoch)}. Try a smaller "
                                     "learning rate.") from None
        test = evaluate(model, test_loader, loss_fn, device=device, progress=progress and main)
        record.update(test_loss=test["loss"], test_acc1=test["acc1"], test_acc5=test["acc5"],
                      epoch_time_s=time.perf_counter() - t0)
        if not math.isfinite(test["loss"]):
            raise NonFiniteLossError(
                f"training stopped: the test loss became {test['loss']} after epoch {epoch} (training loss "
                f"{record['train_loss']:.4g}), so this epoch is not checkpointed; {_kept(ckpt_path, epoch)}. "
                "Try a smaller learning rate.")
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(test["loss"] if scheduler.mode == "min" else test["acc1"])
        elif scheduler is not None:
            scheduler.step()
        history.append(record)
        if main:  # under MPI rank 0 alone writes
            _write_epoch(ckpt_path, history_path, model, optimizer, epoch, scheduler, train_loader, history, extra)
        log(format_record(record, epochs))
    return history


def _kept(ckpt_path, epoch):
    return (f"the last good checkpoint {ckpt_path} (after epoch {epoch - 1}) is unchanged"
            if ckpt_path and os.path.exists(ckpt_path) else "no checkpoint had been written yet")


def _write_epoch(ckpt_path, history_path, model, optimizer, epoch, scheduler, train_loader, history, extra):
    """Checkpoint, then history; if the checkpoint fails the history is still tried (it is small: on a
    nearly full disk it may fit), and the one ``OutputWriteError`` raised says what was kept."""
    error = None
    if ckpt_path is not None:
        try:
            save_training_checkpoint(ckpt_path, model, optimizer, epoch, scheduler, train_loader, history, extra)
        except OutputWriteError as e:
            error = e
    if history_path is not None:
        try:
            write_history(history_path, history)
            kept = f"The history up to epoch {epoch} was written to {os.fspath(history_path)}(.json, .csv)."
        except OSError as e:
            if error is None:
                error = write_error(e, os.fspath(history_path) + ".json", epoch, history, what="history")
            kept = f"The history could not be written either ({os.strerror(e.errno) if e.errno else e})."
        if error is not None:
            error.message += " " + kept
    if error is not None:
        raise error
