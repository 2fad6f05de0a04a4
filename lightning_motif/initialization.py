"""Initial weights that do not depend on how the model is spread over devices.

The model is built on the meta device (no memory), wrapped and sharded there (``parallelism``), and only then
materialised: each rank allocates its own shards on its own device and nothing else, so a 12.7B model never
exists whole on the host or on one GPU. Every module is initialised by its own ``reset_parameters``, run on
full-size tensors on the device under a seed derived from (``init_seed``, the module's name), and each rank keeps
its rows of the result. So the weights are a function of ``init_seed`` and the device type alone: the same for
one process and for any number of FSDP2 ranks, with or without activation checkpointing or compile (the same
module names), bit for bit.
"""

import hashlib

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import _CHECKPOINT_PREFIX
from torch.distributed.tensor import DTensor, distribute_tensor


def module_seed(init_seed: int, module_name: str) -> int:
    """A 63-bit seed that is a pure function of ``init_seed`` and the module's name."""
    digest = hashlib.sha256(f"{init_seed}:{module_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _rows_of_this_rank(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` itself, or this rank's shard of it when ``like`` is a DTensor (no communication)."""
    if isinstance(like, DTensor):
        return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None).to_local()
    return full


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _tied_parameters(net: nn.Module) -> list[tuple[nn.Module, str, tuple[nn.Module, str]]]:
    """(module, key, (module, key) of the first holder) for every parameter held by more than one module."""
    first: dict[int, tuple[nn.Module, str]] = {}
    ties = []
    for module in net.modules(remove_duplicate=False):
        for key, parameter in module._parameters.items():
            if parameter is not None:
                holder = first.setdefault(id(parameter), (module, key))
                if holder != (module, key):
                    ties.append((module, key, holder))
    return ties


@torch.no_grad()
def materialize(net: nn.Module, device: torch.device, init_seed: int) -> None:
    """Allocate ``net``'s parameters and buffers on ``device`` (a DTensor: this rank's shard only) and initialise
    them as described in the module docstring. Raises if a module holds tensors but has no ``reset_parameters``."""
    ties = _tied_parameters(net)
    net.to_empty(device=device)
    for module, key, (first_module, first_key) in ties:  # to_empty gives each module its own copy of a shared
        module._parameters[key] = first_module._parameters[first_key]  # parameter (FSDP2 keeps them shared)
    initialised: set[int] = set()  # a tied weight is initialised once, by the first module that holds it
    for name, module in net.named_modules():
        tensors = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
        fresh = {key: tensor for key, tensor in tensors.items() if id(tensor) not in initialised}
        if not fresh:
            continue
        if not callable(getattr(module, "reset_parameters", None)):
            raise TypeError(f"{type(module).__name__} ({name}) holds {sorted(fresh)} but has no reset_parameters")
        full = {key: torch.empty(tensor.shape, dtype=tensor.dtype, device=device) for key, tensor in fresh.items()}
        slots = {key: module._parameters if key in module._parameters else module._buffers for key in fresh}
        for key, tensor in full.items():  # reset_parameters fills the full tensors in place of the shards
            slots[key][key] = nn.Parameter(tensor, requires_grad=False) if slots[key] is module._parameters else tensor
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
            torch.manual_seed(module_seed(init_seed, name.replace(_CHECKPOINT_PREFIX, "")))
            module.reset_parameters()
        for key, tensor in fresh.items():
            slots[key][key] = tensor
            _local(tensor).copy_(_rows_of_this_rank(full[key], tensor))
            initialised.add(id(tensor))


@torch.no_grad()
def load_weights(net: nn.Module, source) -> None:
    """Copy the weights of ``source`` (a ``lightning_motif.interop.weights.WeightSource`` holding the same
    model) into ``net``'s parameters; a sharded (DTensor) parameter reads only this rank's rows (a distributed
    checkpoint: only the stored pieces that overlap them)."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    state = {name.replace(_CHECKPOINT_PREFIX, ""): tensor for name, tensor in net.state_dict(keep_vars=True).items()}
    if hasattr(source, "load_into"):
        source.load_into(state)
        return
    names = set(source.names())
    for name, parameter in state.items():
        if name not in names:  # a tied lm_head the checkpoint leaves out: the embedding holds it
            continue
        if isinstance(parameter, DTensor):
            local_shape, offset = compute_local_shape_and_global_offset(parameter.shape, parameter.device_mesh,
                                                                        parameter.placements)
            start = offset[0] if parameter.ndim else 0
            values = source.rows(name, start, start + local_shape[0]) if parameter.ndim else source.tensor(name)
            parameter.to_local().copy_(values.reshape(local_shape))
        else:
            parameter.copy_(source.tensor(name))
