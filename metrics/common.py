"""Small helpers the metrics share: cat states, sample deduplication and CPU threading."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["as_id", "cat_state", "is_empty_state", "one_cpu_thread", "unique_sorted"]


def is_empty_state(state) -> bool:
    """Whether a ``cat`` state holds nothing: it is a list before a DDP sync and a tensor after it."""
    return len(state) == 0 if isinstance(state, list) else state.numel() == 0


def cat_state(state) -> Tensor:
    """A non-empty ``cat`` state as one tensor (a list of per-update tensors before a sync, one after)."""
    return torch.cat(state) if isinstance(state, list) else state


def as_id(value, device) -> Tensor:
    """A sample id (or any integer) as the ``(1,)`` int64 tensor a ``cat`` state appends."""
    return torch.as_tensor(value, dtype=torch.int64, device=device).reshape(1)


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
