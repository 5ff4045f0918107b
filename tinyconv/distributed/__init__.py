"""Data-parallel training across processes and machines: MPI (``mpi4py``) on CPUs, NCCL on GPUs.

Run a script under ``mpiexec -n P python script.py``; in it::

    import tinyconv.distributed as dist
    dist.init()                                        # rank, world size, local rank from MPI
    model = dist.DistributedDataParallel(model)        # same weights everywhere, gradients averaged
    loader = DataLoader(ds, batch_size=B // P, sampler=dist.DistributedSampler(ds))

``comm`` holds the process group and the collectives, ``ddp`` the model wrapper, ``sampler`` the dataset
sharding, ``sync_batchnorm`` batch norm over the global batch.
"""
from .comm import (ReduceOp, abort, all_gather, all_reduce, average_over_ranks, barrier, broadcast,
                   destroy_process_group, get_local_rank, get_rank, get_world_size, init, install_excepthook,
                   is_available, is_initialized, is_main_process, launched_by_mpi)
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__ = ["ReduceOp", "abort", "average_over_ranks", "is_main_process", "all_gather", "all_reduce", "barrier", "broadcast", "destroy_process_group",
           "get_local_rank", "get_rank", "get_world_size", "init", "install_excepthook", "is_available",
           "is_initialized", "launched_by_mpi", "DistributedDataParallel", "DistributedSampler",
           "SyncBatchNorm", "convert_sync_batchnorm"]
