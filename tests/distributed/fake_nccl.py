"""A stand-in for ``cupy.cuda.nccl`` on top of MPI, for the fake CuPy of ``tests/gpu/fake_cupy.py``.

It takes NCCL's calls as CuPy exposes them (raw device pointers, element counts, NCCL dtype and op codes, a
stream pointer) and performs them with MPI on the host memory that fake CuPy's pointers address.  It checks
what NCCL would refuse: a communicator built with another unique id, rank or size than the other ranks', and
pointers or counts that do not match.  ``CALLS`` records every collective (name, count, dtype code).
"""
import ctypes
import os

import numpy as np

CALLS = []

NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_INT64 = 0, 1, 2, 4
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32, NCCL_INT64: np.int64,
           NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}


def get_unique_id():
    """NCCL's unique id: 128 opaque bytes (CuPy returns them as a tuple of ints)."""
    return tuple(os.urandom(128))


def _view(ptr, count, dtype):
    dtype = np.dtype(_DTYPES[dtype])
    buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype, count=count)


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        ids = self.comm.allgather((tuple(commId), rank, ndev))
        if len({i for i, _, _ in ids}) != 1:
            raise RuntimeError("fake NCCL: ranks joined with different unique ids (the bootstrap failed)")
        if [r for _, r, _ in ids] != list(range(self.comm.Get_size())) or {n for _, _, n in ids} != {
                self.comm.Get_size()}:
            raise RuntimeError(f"fake NCCL: ranks/sizes {ids} do not match the MPI world")
        self.rank, self.ndev = rank, ndev

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        CALLS.append(("allReduce", count, datatype))
        ops = {NCCL_SUM: self.MPI.SUM, NCCL_MAX: self.MPI.MAX, NCCL_MIN: self.MPI.MIN}
        send, recv = _view(sendbuf, count, datatype), _view(recvbuf, count, datatype)
        if sendbuf == recvbuf:
            self.comm.Allreduce(self.MPI.IN_PLACE, recv, op=ops[op])
        else:
            self.comm.Allreduce(send, recv, op=ops[op])

    def bcast(self, buff, count, datatype, root, stream):
        CALLS.append(("bcast", count, datatype))
        self.comm.Bcast(_view(buff, count, datatype), root=root)

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        CALLS.append(("allGather", count, datatype))
        self.comm.Allgather(_view(sendbuf, count, datatype), _view(recvbuf, count * self.ndev, datatype))


def install(monkeypatch, fake_cupy):
    """Give fake CuPy this module as ``cupy.cuda.nccl`` and make the process group build its NCCL backend
    anew (with it) on the next collective on GPU arrays."""
    import sys
    from tinyconv.distributed import comm
    monkeypatch.setattr(fake_cupy.cuda, "nccl", sys.modules[__name__], raising=False)
    monkeypatch.setattr(comm._world, "gpu", None)
    CALLS.clear()
