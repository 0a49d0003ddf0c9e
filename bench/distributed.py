"""The processes one training run is spread over (``torchrun``; see ``bench.ddp``), and the
one collective a training step needs.

Data parallelism here is ``torch.distributed`` with one summed all-reduce of the gradients
per optimizer step (:meth:`World.reduce_step`), not the ``DistributedDataParallel`` wrapper.
Why: a step's batch is split into micro-batches (``TrainConfig.accumulate``), spread over
the processes; at the end of an epoch a process may hold none of them, and DDP requires
every process to run a forward and a backward each step. The losses are also computed
outside ``forward`` (``TransferModel.loss``), where DDP cannot see which parameters they
reach. Summing gradients weighted by each micro-batch's share of the step makes a run over
``W`` processes compute what one process computes with ``accumulate × W`` micro-batches
(docs/reliability.md, "Scale-out", says what is equal).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes of one run (0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast_parameters(self, params: list[torch.Tensor]) -> None:
        """Every process starts from rank 0's values."""
        if self.size > 1:
            with torch.no_grad():
                for p in params:
                    dist.broadcast(p.data, 0)

    def reduce_step(self, params: list[torch.nn.Parameter], losses: dict[str, torch.Tensor],
                    keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Sum the gradients of ``params`` and the weighted loss terms ``losses`` over the
        processes, in place, with one all-reduce. A parameter keeps ``grad=None`` only if it
        has none in every process (AdamW skips those, as it does in a single process)."""
        if self.size == 1:
            return losses
        device = params[0].device
        has = torch.tensor([float(p.grad is not None) for p in params], device=device)
        parts = [p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=device)
                 for p in params]
        values = torch.stack([losses[k].float().to(device) if k in losses else torch.zeros((), device=device)
                              for k in keys])
        flat = torch.cat([*parts, has, values])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n
        has, values = flat[offset:offset + len(params)], flat[offset + len(params):]
        for p, h in zip(params, has.tolist()):
            if h == 0:
                p.grad = None
        return {k: v for k, v in zip(keys, values)}
