"""Sharded extraction on ``torch.distributed``: which rank encodes which images.

Launch the ordinary command under torchrun, one process per device (or per few CPU cores)::

    torchrun --nproc_per_node 4 -m ufd_lib extract --encoder clip:ViT-L/14 --set train=...

:func:`init_world` reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` and joins the process group
(gloo on CPU; NCCL on CUDA plus a gloo group for Python objects); without them the run is one
process. All ranks must see the same files and the same cache directory. Each rank hashes a
contiguous slice of the images, and encodes a contiguous run of the groups rank 0 broadcasts
(:func:`even_slice`), so the batches are those of a single-process run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class World:
    """The processes of one extraction. A default ``World()`` is a single process.

    rank, world_size, local_rank: as set by torchrun. group: the process group used for
    Python-object collectives (None: the default group). owns_group: whether
    :func:`close_world` should destroy the process group (it was created by :func:`init_world`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank. Also a barrier."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value, group=self.group)
        return gathered

    def broadcast(self, value: Any, source: int = 0) -> Any:
        """Rank ``source``'s ``value`` on every rank (the others pass anything, e.g. None)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.rank == source else None]
        dist.broadcast_object_list(box, src=source, group=self.group)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)


def environment() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) without them."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {error}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})")
    return rank, world_size, local_rank


def rank_device(device: str | torch.device | None, local_rank: int, world_size: int) -> str:
    """The device a rank should use: ``auto``/``cuda`` become ``cuda:<local_rank>`` when sharded."""
    text = "auto" if device is None else str(device)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda" and world_size > 1:
        return f"cuda:{local_rank}"
    return text


def init_world(device: str | torch.device | None = None) -> World:
    """Join the process group described by the environment (a no-op for a single process).

    device: the device this rank encodes on; CUDA selects NCCL for the default group (and
    sets the current device), CPU selects gloo. Object collectives always go through gloo.
    """
    import torch.distributed as dist

    rank, world_size, local_rank = environment()
    if world_size == 1:
        return World()
    if dist.is_initialized():  # e.g. a notebook or a caller that set up its own group
        return World(dist.get_rank(), dist.get_world_size(), local_rank, None, owns_group=False)
    on_cuda = torch.device(rank_device(device, local_rank, world_size)).type == "cuda"
    if on_cuda:
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        group = dist.new_group(backend="gloo")  # Python objects travel on the CPU
    else:
        dist.init_process_group("gloo")
        group = None
    return World(rank, world_size, local_rank, group, owns_group=True)


def close_world(world: World) -> None:
    """Leave the process group if :func:`init_world` created it."""
    if world.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()
        world.owns_group = False


def even_slice(n_items: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous share of ``n_items``; shares differ by at most one item."""
    return range(n_items * rank // world_size, n_items * (rank + 1) // world_size)
