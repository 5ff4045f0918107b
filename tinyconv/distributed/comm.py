"""The process group: ``init()`` from MPI's world communicator, and collectives on tensors.

tinyconv does not implement a transport of its own.  On the CPU the collectives are MPI's (through
``mpi4py``): NumPy arrays are reduced in place with ``Allreduce(IN_PLACE, ...)``.  On GPUs they are NCCL's
(through ``cupy.cuda.nccl``), on CuPy arrays in place on the device, with no host round trip; the NCCL
communicator is bootstrapped as ChainerMN did it: rank 0 draws NCCL's unique id, MPI broadcasts it, and every
rank joins with ``NcclCommunicator(world_size, uid, rank)``.  The tensor's array type picks the backend.

Both backends answer the same five calls (``allreduce``, ``iallreduce``, ``bcast``, ``allgather``,
``barrier``) on raw arrays, so ``DistributedDataParallel`` and ``SyncBatchNorm`` never ask which one runs, and
a test harness (``tests/distributed/fake_nccl.py``) can stand in for NCCL on the host.

A rank that dies from an uncaught exception would leave the others blocked in a collective for ever;
``init()`` therefore installs ``sys.excepthook`` that prints the rank and the error and calls ``MPI Abort``,
which ends every process of the job (``mpiexec`` exits non-zero).
"""
import importlib
import os
import sys
import time
import traceback

import numpy as np

from .. import backend
from ..core import Tensor


class ReduceOp:
    """The reductions of ``all_reduce`` (PyTorch's ``dist.ReduceOp`` names)."""
    SUM, AVG, MAX, MIN = "sum", "avg", "max", "min"


_world = None  # the _World after init()


class _World:
    def __init__(self, comm, rank, size, local_rank):
        self.comm, self.rank, self.size, self.local_rank = comm, rank, size, local_rank
        self.cpu = MPIBackend(comm)
        self.gpu = None  # an NCCLBackend, built on the first collective on CuPy arrays


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("tinyconv.distributed needs mpi4py and an MPI implementation: "
                          "pip install -e '.[mpi]'  (brings mpi4py and MPICH from PyPI)") from e
    return MPI


def init(comm=None, excepthook=True, device="cpu"):
    """Join the process group: MPI's world communicator (or ``comm``, an ``mpi4py`` communicator).

    Sets the rank, the world size and the local rank (the rank among the processes of this machine).  With
    ``device='cuda'`` each rank makes GPU ``local_rank % gpu_count`` CuPy's current device (one GPU per
    process, as NCCL expects).  With ``excepthook`` an uncaught exception in any rank prints
    ``rank R/P failed`` with its traceback and aborts the whole job.  Calling it again is a no-op.  Run under
    ``mpiexec -n P python script.py``; without ``mpiexec`` it is a world of one.
    """
    global _world
    if _world is not None:
        return
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    _world = _World(comm, comm.Get_rank(), comm.Get_size(), local.Get_rank())
    local.Free()
    if backend.normalize_device(device) == "cuda":
        cp = backend.cupy_or_none()
        if cp is None:
            raise RuntimeError("tinyconv.distributed.init(device='cuda'): CuPy is not installed")
        cp.cuda.Device(_world.local_rank % cp.cuda.runtime.getDeviceCount()).use()
    if excepthook:
        install_excepthook()


def is_initialized():
    """True after ``init()`` (and before ``destroy_process_group()``)."""
    return _world is not None


def is_available():
    """True when ``mpi4py`` imports (``init()`` can then be called)."""
    try:
        _mpi()
        return True
    except ImportError:
        return False


def destroy_process_group():
    """Leave the group (the MPI library itself stays up until the process exits, as mpi4py arranges)."""
    global _world
    _world = None


def _get():
    if _world is None:
        raise RuntimeError("tinyconv.distributed: the process group is not initialized; call "
                           "tinyconv.distributed.init() first (and run under mpiexec)")
    return _world


def get_rank():
    """This process's rank in ``0 .. world_size - 1``."""
    return _get().rank


def get_world_size():
    """The number of processes in the group."""
    return _get().size


def get_local_rank():
    """This process's rank among the processes on the same machine (the GPU it should use)."""
    return _get().local_rank


def is_main_process():
    """True on rank 0, and in a process that never called ``init()``: the one that logs and writes files."""
    return _world is None or _world.rank == 0


def average_over_ranks(record, mean=(), total=()):
    """``record`` (a dict of numbers) with the keys in ``mean`` averaged and those in ``total`` summed over
    the ranks (one all-reduce); unchanged outside a process group of several ranks."""
    if _world is None or _world.size == 1:
        return record
    keys = [k for k in (*mean, *total) if k in record]
    values = np.array([float(record[k]) for k in keys], np.float64)
    _world.cpu.allreduce(values)
    out = dict(record)
    for k, v in zip(keys, values):
        out[k] = v / _world.size if k in mean else v
    return out


def abort(code=1):
    """End every rank of the job with exit status ``code`` (``MPI Abort``); a plain exit otherwise."""
    if _world is not None and _world.size > 1:
        _flush_and_abort(_world.comm, code)
    sys.exit(code)


# What a rank writes goes through a pipe to mpiexec's proxy, and ``MPI Abort`` reaches the proxy on another
# socket: when the abort is read first, the proxy kills the job with the rank's last lines still unread in the
# pipe, and the user sees no error at all (MPICH's Hydra, about 1 run in 20 here with an immediate abort).
# Waiting a moment after the flush lets the proxy forward them; it costs only a job that is ending anyway.
ABORT_GRACE_S = 0.5


def _flush_and_abort(comm, code):
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_S)
    comm.Abort(code)


def barrier():
    """Wait until every rank has reached this call."""
    _get().cpu.barrier()


def backend_for(array):
    """The collective backend for ``array``: MPI for NumPy arrays, NCCL for CuPy arrays."""
    world = _get()
    if backend.device_of(array) == "cpu":
        return world.cpu
    if world.gpu is None:
        world.gpu = NCCLBackend(world.comm, backend.cupy_or_none())
    return world.gpu


def _array(tensor, what):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a tinyconv Tensor, got {type(tensor).__name__}")
    if not tensor.data.flags.c_contiguous:
        raise ValueError(f"{what}: the tensor must be contiguous (shape {tensor.shape})")
    return tensor.data


def all_reduce(tensor, op=ReduceOp.SUM):
    """Reduce ``tensor`` over all ranks in place (``op``: ``ReduceOp.SUM``, ``AVG``, ``MAX``, ``MIN``)."""
    a = _array(tensor, "all_reduce")
    backend_for(a).allreduce(a, op)
    tensor._version += 1


def broadcast(tensor, src=0):
    """Overwrite ``tensor`` on every rank with rank ``src``'s, in place."""
    a = _array(tensor, "broadcast")
    backend_for(a).bcast(a, src)
    tensor._version += 1


def all_gather(tensor_list, tensor):
    """Fill ``tensor_list`` (one tensor per rank, each of ``tensor``'s shape) with every rank's ``tensor``."""
    a = _array(tensor, "all_gather")
    size = get_world_size()
    if len(tensor_list) != size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} entries for a world of {size} ranks")
    xp = backend.get_array_module(a)
    out = xp.empty((size,) + a.shape, dtype=a.dtype)
    backend_for(a).allgather(a, out)
    for i, t in enumerate(tensor_list):
        if tuple(t.shape) != a.shape:
            raise ValueError(f"all_gather: tensor_list[{i}] has shape {tuple(t.shape)}, expected {a.shape}")
        t.data[...] = out[i]
        t._version += 1


class MPIBackend:
    """Collectives on NumPy arrays over an ``mpi4py`` communicator (blocking, and ``Iallreduce``)."""

    def __init__(self, comm):
        self.comm, self.MPI = comm, _mpi()
        self.size = comm.Get_size()

    def _op(self, op):
        return {ReduceOp.SUM: self.MPI.SUM, ReduceOp.AVG: self.MPI.SUM,
                ReduceOp.MAX: self.MPI.MAX, ReduceOp.MIN: self.MPI.MIN}[op]

    def allreduce(self, a, op=ReduceOp.SUM):
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self._op(op))
        if op == ReduceOp.AVG:
            a /= a.dtype.type(self.size)

    def iallreduce(self, a):
        """Start a sum in place; returns a request whose ``wait()`` completes it (``test()``: progress)."""
        return _MPIRequest(self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM))

    def bcast(self, a, root=0):
        self.comm.Bcast(a, root=root)

    def allgather(self, a, out):
        self.comm.Allgather(a, out)

    def barrier(self):
        self.comm.Barrier()


class _MPIRequest:
    def __init__(self, request):
        self.request = request

    def test(self):
        return self.request.Test()

    def wait(self):
        self.request.Wait()


def nccl_module(cupy):
    """CuPy's NCCL wrapper, ``cupy.cuda.nccl``, or a RuntimeError saying why there is none.

    ``import cupy`` does not import that submodule (CuPy 13 and later answer ``cupy.cuda.nccl`` with an
    AttributeError until something imports it), so it is imported here; its ``available`` is False where CuPy
    could not load the NCCL library (the H200 this was run on had it from the ``nvidia-nccl-cu13`` wheel).
    """
    if cupy is None:
        raise RuntimeError("tinyconv.distributed: a collective on GPU arrays needs CuPy with NCCL; "
                           "CuPy is not installed")
    nccl = getattr(cupy.cuda, "nccl", None)
    if nccl is None:
        try:
            nccl = importlib.import_module(f"{cupy.__name__}.cuda.nccl")
        except ImportError as e:
            raise RuntimeError(f"tinyconv.distributed: a collective on GPU arrays needs CuPy with NCCL; "
                               f"importing cupy.cuda.nccl failed: {e}") from e
    if not getattr(nccl, "available", True):
        raise RuntimeError("tinyconv.distributed: a collective on GPU arrays needs CuPy with NCCL; CuPy "
                           f"{getattr(cupy, '__version__', '')} could not load the NCCL library "
                           "(install NCCL where CuPy finds it, e.g. the nvidia-nccl-cu<CUDA major> wheel)")
    return nccl


class NCCLBackend:
    """Collectives on CuPy arrays through NCCL, in place on the device, on CuPy's current stream.

    ``cupy`` is the CuPy module (``cupy.cuda.nccl`` is used); the communicator is bootstrapped over
    ``mpi_comm``: rank 0's ``nccl.get_unique_id()`` is broadcast, then every rank builds
    ``NcclCommunicator(size, uid, rank)``.  NCCL calls are asynchronous on the stream, so a reduction is
    ordered before the kernels that read its result without the host waiting.
    """

    _dtypes = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
               "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8", "int8": "NCCL_INT8"}

    def __init__(self, mpi_comm, cupy):
        self.cupy, self.nccl, self.mpi_comm = cupy, nccl_module(cupy), mpi_comm
        rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        uid = self.nccl.get_unique_id() if rank == 0 else None
        uid = mpi_comm.bcast(uid, root=0)
        self.comm = self.nccl.NcclCommunicator(self.size, uid, rank)

    def _dtype(self, a):
        name = self._dtypes.get(a.dtype.name)
        if name is None:
            raise TypeError(f"tinyconv.distributed: NCCL cannot reduce arrays of dtype {a.dtype}")
        return getattr(self.nccl, name)

    def _stream(self):
        return self.cupy.cuda.get_current_stream().ptr

    def allreduce(self, a, op=ReduceOp.SUM):
        nccl_op = {ReduceOp.SUM: self.nccl.NCCL_SUM, ReduceOp.AVG: self.nccl.NCCL_SUM,
                   ReduceOp.MAX: self.nccl.NCCL_MAX, ReduceOp.MIN: self.nccl.NCCL_MIN}[op]
        self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._dtype(a), nccl_op, self._stream())
        if op == ReduceOp.AVG:
            a /= a.dtype.type(self.size)

    def iallreduce(self, a):
        """NCCL is already asynchronous on the stream: start the sum; ``wait()`` has nothing to do."""
        self.allreduce(a)
        return _DoneRequest()

    def bcast(self, a, root=0):
        self.comm.bcast(a.data.ptr, a.size, self._dtype(a), root, self._stream())

    def allgather(self, a, out):
        self.comm.allGather(a.data.ptr, out.data.ptr, a.size, self._dtype(a), self._stream())

    def barrier(self):
        self.cupy.cuda.get_current_stream().synchronize()
        self.mpi_comm.Barrier()


class _DoneRequest:
    def test(self):
        return True

    def wait(self):
        pass


def install_excepthook():
    """Make an uncaught exception in this rank print ``rank R/P: <traceback>`` and abort every rank."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        world = _world
        if world is None or world.size == 1:
            return previous(kind, value, tb)
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"tinyconv.distributed: rank {world.rank}/{world.size} failed, aborting all ranks:\n"
                         f"{text}")
        _flush_and_abort(world.comm, 1)

    sys.excepthook = hook


def launched_by_mpi():
    """True when this process was started by ``mpiexec``/``mpirun`` (MPICH's or Open MPI's variables)."""
    return any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"))

