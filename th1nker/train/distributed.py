"""Training on several processes under torchrun: process group, data shards, gradient averaging, FSDP2.

Without torchrun every function here is the identity or does nothing, so one process trains as before.
Under torchrun (`th1nker train --nproc N`, or `torchrun --nproc-per-node N -m th1nker train`):

* every rank holds the same data generator and draws each micro-batch's *global* batch
  (train.batch_size examples); a rank keeps its slice, so N processes see the examples one process would.
  The unroll draws from it too, so all ranks think through the same TBPTT windows and random walks (FSDP
  needs that); the initial latents are drawn per rank-local batch, so rank r's i-th example starts from the
  same random latent as rank 0's i-th;
* ddp: every rank holds the whole model, and before each optimizer step one flat all_reduce averages the
  gradients (and the loss) over ranks. DistributedDataParallel would not fit: it syncs gradients through
  hooks on `forward`, but the trainer drives the model through `start`, `step` and its blocks and runs one
  backward per TBPTT window, with blocks that a schedule may leave unused. Averaging explicitly gives
  every rank the same gradient, so the parameters stay identical after every update;
* fsdp: FSDP2 shards parameters, gradients and optimizer state over a 1-D device mesh; its units are the
  layers inside blocks and encoders (modules that take and return tensors, so FSDP's hooks see them), and
  the root's `start`, `encode` and `step` count as forward passes;
* checkpoints hold full (gathered) tensors written by rank 0, so they load in a single process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import torch
import torch.distributed as dist
from torch import Tensor, nn

from th1nker.errors import RecipeError


def world_size() -> int:
    """Processes in this run (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main() -> bool:
    """Rank 0: the process that prints, logs to MLflow and writes the run folder."""
    return rank() == 0


def init(backend: str, device: torch.device) -> torch.device:
    """Join torchrun's process group (once; nothing in a single process); returns this rank's device."""
    if world_size() == 1:
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend)
    return device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (e.g. a run folder named after rank 0's clock)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_batch_size(batch_size: int, world: int) -> int:
    """Examples per rank: train.batch_size is the global batch."""
    if batch_size % world:
        raise RecipeError(f"train.batch_size: {batch_size} examples do not split evenly over {world} processes; "
                          f"set train.batch_size to a multiple of {world} (it is the global batch)")
    return batch_size // world


def shard_batch(batch):
    """This rank's slice of a global batch (the batch itself in a single process)."""
    world = world_size()
    if world == 1:
        return batch
    n = local_batch_size(len(batch), world)
    rows = slice(rank() * n, (rank() + 1) * n)
    return replace(batch, inputs={k: v[rows] for k, v in batch.inputs.items()}, target=batch.target[rows],
                   masks={k: v[rows] for k, v in batch.masks.items()})


def prepare(model: nn.Module, ema: nn.Module | None, recipe) -> None:
    """Before the optimizer is built: ddp gives every rank rank 0's weights; fsdp shards model and EMA."""
    world = world_size()
    if world == 1:
        return
    local_batch_size(recipe.train.batch_size, world)
    if recipe.train.distributed.strategy == "ddp":
        for module in (m for m in (model, ema) if m is not None):
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)
        return
    if recipe.schedule.kind not in ("fixed", "random"):
        raise RecipeError(f"train.distributed.strategy: fsdp needs every rank to run the same blocks, but "
                          f"schedule.kind '{recipe.schedule.kind}' chooses them per example; "
                          f"use strategy ddp, or a fixed or random schedule")
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(next(model.parameters()).device.type, (world,))
    _shard(model, mesh)
    if ema is not None:
        _shard(ema.module, mesh)


def _shard(model: nn.Module, mesh) -> None:
    """FSDP2 units: the tensor-level layers under blocks and encoders, then the root with its methods."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    from th1nker.blocks.base import Block

    encoders = list(model.encoders.values())

    def units(module: nn.Module):
        for child in module.children():
            if isinstance(child, (Block, nn.ModuleList, nn.ModuleDict)) or any(child is e for e in encoders):
                yield from units(child)  # takes or returns a Thought / Source: look inside
            elif next(child.parameters(), None) is not None:
                yield child

    for unit in list(units(model)):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for method in ("start", "encode", "run_call"):
        register_fsdp_forward_method(model, method)


def sync_gradients(model: nn.Module, loss: float) -> float:
    """Average the replicated parameters' gradients and the loss over ranks in one all_reduce; returns the mean loss.

    FSDP-sharded parameters are left alone (FSDP reduce-scattered them in backward). A gradient missing on
    some ranks counts as zero there; one missing on every rank stays None, as in a single process.
    """
    world = world_size()
    if world == 1:
        return loss
    params = [p for p in model.parameters() if p.requires_grad and not _is_shard(p)]
    device = next(model.parameters()).device
    present = torch.tensor([p.grad is not None for p in params] + [loss], dtype=torch.float32, device=device)
    flat = torch.cat([*(p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=device)
                        for p in params), present])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, seen in zip(params, flat[-len(present):-1].tolist()):
        if seen:
            p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
    return float(flat[-1])


def _is_shard(tensor: Tensor) -> bool:
    """An FSDP shard: a DTensor (none exist until FSDP imports torch.distributed.tensor, which is slow to import)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def _full(tensor: Tensor) -> Tensor:
    return tensor.full_tensor() if _is_shard(tensor) else tensor


def _like(full: Tensor, like: Tensor) -> Tensor:
    """`full` cut to this rank's shard when `like` is FSDP-sharded."""
    if not _is_shard(like):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(like.device), like.device_mesh, like.placements, src_data_rank=None)


def full_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The module's state with FSDP shards gathered into full tensors (every rank must call it)."""
    return {k: _full(v) for k, v in module.state_dict().items()}


def load_full_state_dict(module: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Load full tensors; where the module is FSDP-sharded each rank keeps its shard."""
    own = module.state_dict()
    module.load_state_dict({k: _like(v, own[k]) for k, v in tensors.items()})


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() with FSDP-sharded moments gathered (every rank must call it)."""
    sd = optimizer.state_dict()
    return {**sd, "state": {pid: {k: _full(v) for k, v in st.items()} for pid, st in sd["state"].items()}}


def local_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[int, dict[str, Tensor]]) -> dict:
    """Full optimizer moments (by parameter id) cut to this rank's shards: the inverse of full_optimizer_state."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {pid: {k: _like(v, params[pid]) if v.dim() and v.shape == params[pid].shape else v for k, v in st.items()}
            for pid, st in state.items()}


def generator_states(generator: torch.Generator) -> dict[str, Tensor]:
    """{"rng.generator": state} in one process; under torchrun every rank's, as "rng.generator.<rank>"."""
    if world_size() == 1:
        return {generator_key(): generator.get_state()}
    states = [None] * world_size()
    dist.all_gather_object(states, generator.get_state())
    return {f"rng.generator.{r}": s for r, s in enumerate(states)}


def generator_key() -> str:
    """Where this rank's generator state lives in trainer.safetensors."""
    return "rng.generator" if world_size() == 1 else f"rng.generator.{rank()}"


def launch(nproc: int, args: list[str]) -> int:
    """Run `python -m th1nker ARGS` on `nproc` local processes through torchrun; returns the exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "-m", "th1nker", *args])
    except ChildFailedError as e:
        code = e.get_first_failure()[1].exitcode
        return code if code > 0 else 1
    return 0
