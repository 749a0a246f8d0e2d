"""Small helpers the metrics share: sample deduplication and CPU threading."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["one_cpu_thread", "unique_sorted"]


def unique_sorted(ids: Tensor) -> Tensor:
    """Index of the first occurrence of each id, in ascending id order: the rows a metric keeps after the DDP
    gather (a DistributedSampler pads with duplicate samples)."""
    order = torch.argsort(ids, stable=True)
    sorted_ids = ids[order]
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return order[first]


@contextmanager
def one_cpu_thread(device: torch.device | str):
    """Run torch single-threaded on the CPU for the duration (no-op on other devices).

    The metrics' kernels issue many small and mid-sized ops; intra-op threads cost more in synchronisation than
    they save there (on a busy 2-core machine: 6.4 s of CPU with 2 threads, 0.4 s with one), and around the
    compiled BOP kernels torch's OpenMP pool would spin against numba's for the same cores.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
