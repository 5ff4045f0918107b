"""``DistributedDataParallel``: every rank holds the whole model, sees its own share of the batch, and the
gradients are averaged across ranks after each backward pass, so every rank takes the same optimiser step.

Why averaging is exact.  With the global batch of B samples split into P shards of B/P, and the loss a mean
over samples, ``L = (1/P) sum_r L_r`` where ``L_r`` is the mean loss of shard r; so ``dL/dW = (1/P) sum_r dL_r/dW``:
the average of the ranks' gradients equals the gradient of the full batch, up to float32 round-off (the sums
are grouped differently).  Batch norm breaks this unless its statistics are synchronised (``SyncBatchNorm``).

Buckets.  Gradients are packed into flat float32 buffers of about ``bucket_cap_mb`` MB, in reverse
registration order (roughly the order backward produces them), and each bucket is reduced with one call,
not one per parameter.  A bucket is started (``Iallreduce`` on the CPU, an NCCL call on the GPU) as soon as
every parameter in it has received its gradient, from a ``register_post_accumulate_grad_hook``; the last
buckets are finished by a callback queued to run when the backward pass ends.  A parameter that receives a
second gradient after its bucket was started (used twice in one forward) marks the bucket stale, and it is
reduced again at the end.  Parameters that got no gradient on a rank count as zeros there.
"""
import contextlib

from .. import backend
from ..core import Tensor, queue_callback
from ..nn.module import Module
from . import comm


class _Bucket:
    def __init__(self, params):
        self.params = params
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.data.size
        self.numel = n
        self.buffer = None
        self.reset()

    def reset(self):
        self.pending, self.request, self.stale = set(id(p) for p in self.params), None, False

    def pack(self):
        xp = backend.get_array_module(self.params[0].data)
        dtype = self.params[0].data.dtype
        if self.buffer is None or self.buffer.dtype != dtype or backend.get_array_module(self.buffer) is not xp:
            self.buffer = xp.empty(self.numel, dtype=dtype)
        for p, o in zip(self.params, self.offsets):
            if p.grad is None:
                self.buffer[o:o + p.data.size] = 0
            else:
                self.buffer[o:o + p.data.size] = p.grad.data.reshape(-1)
        return self.buffer

    def unpack(self, scale):
        self.buffer *= self.buffer.dtype.type(scale)
        for p, o in zip(self.params, self.offsets):
            p.grad = Tensor(self.buffer[o:o + p.data.size].reshape(p.data.shape).copy())


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the initialised process group.

    At construction the parameters and buffers of rank 0 are broadcast to every rank.  Calling the wrapper
    calls ``module``; after ``loss.backward()`` each parameter's ``.grad`` holds the average over ranks.
    ``broadcast_buffers`` (PyTorch's default True): rank 0's buffers (batch-norm running statistics) are
    broadcast before each forward in training mode, so every rank evaluates with the same statistics.
    ``no_sync()``: a context in which backward only accumulates locally (gradient accumulation); the next
    backward outside it averages the sum.

    State-dict keys are the wrapped module's own (``conv1.weight``), NOT PyTorch's ``module.conv1.weight``:
    a checkpoint of the wrapper loads into the bare model and back, with no renaming.  The wrapped model is
    ``.module`` as in PyTorch.
    """

    def __init__(self, module, bucket_cap_mb=4, broadcast_buffers=True):
        super().__init__()
        if not comm.is_initialized():
            raise RuntimeError("DistributedDataParallel: call tinyconv.distributed.init() first")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.world_size = comm.get_world_size()
        self._sync = True
        self._queued = False
        self._sync_state(include_params=True)
        params = [p for p in module.parameters() if p.requires_grad]
        self._buckets = self._make_buckets(list(reversed(params)), int(bucket_cap_mb * 2**20))
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]

    @staticmethod
    def _make_buckets(params, cap_bytes):
        buckets, current, size = [], [], 0
        for p in params:
            kind = (p.data.dtype, p.device)
            if current and (size + p.data.nbytes > cap_bytes or kind != (current[0].data.dtype, current[0].device)):
                buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += p.data.nbytes
        if current:
            buckets.append(_Bucket(current))
        return buckets

    def _sync_state(self, include_params):
        """Broadcast rank 0's parameters (if asked) and floating/int buffers to every rank, in place."""
        tensors = list(self.module.parameters()) if include_params else []
        tensors += [b for b in self.module.buffers() if b is not None]
        for t in tensors:
            if not t.data.flags.c_contiguous:
                t.data = t.data.copy()
            comm.backend_for(t.data).bcast(t.data, 0)

    # -- Module interface -------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self.training and self.broadcast_buffers and self.world_size > 1:
            self._sync_state(include_params=False)
        return self.module(*args, **kwargs)

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """The wrapped module's state dict (keys without a ``module.`` prefix; see the class docstring)."""
        return self.module.state_dict(destination, prefix, keep_vars)

    def load_state_dict(self, state_dict, strict=True):
        """Load into the wrapped module (keys without ``module.``; PyTorch's prefixed keys are accepted too)."""
        if state_dict and all(k.startswith("module.") for k in state_dict):
            state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
        return self.module.load_state_dict(state_dict, strict)

    @contextlib.contextmanager
    def no_sync(self):
        """Accumulate gradients locally inside the block; the first backward after it averages them."""
        self._sync = False
        try:
            yield
        finally:
            self._sync = True

    # -- gradient reduction -----------------------------------------------------------------------------
    def _on_grad(self, p):
        if not self._sync:
            return
        if not self._queued:
            self._queued = True
            queue_callback(self._finish)
        bucket = self._bucket_of[id(p)]
        if bucket.request is not None:
            bucket.stale = True  # a second gradient for a parameter of a bucket already on the wire
            return
        bucket.pending.discard(id(p))
        if not bucket.pending and self.world_size > 1:
            data = bucket.pack()
            bucket.request = comm.backend_for(data).iallreduce(data)
        for b in self._buckets:  # let MPI progress the buckets already started
            if b.request is not None:
                b.request.test()

    def _finish(self):
        """At the end of backward: complete every bucket (reduce those not started or stale), average."""
        self._queued = False
        for b in self._buckets:
            if self.world_size > 1:
                if b.request is not None:
                    b.request.wait()
                if b.request is None or b.stale:
                    data = b.pack()
                    comm.backend_for(data).allreduce(data)
                b.unpack(1.0 / self.world_size)
            b.reset()

    def extra_repr(self):
        return f"world_size={self.world_size}, buckets={len(self._buckets)}"
