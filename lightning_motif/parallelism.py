"""How the network is spread over devices, applied from outside the model in torchtitan's order: per block,
activation checkpointing, then torch.compile, then FSDP2 ``fully_shard`` (one all-gather / reduce-scatter unit
per block); the embeddings and [final norm, lm head] are units of their own (one unit for both when the head is
tied to the embeddings), and the root is sharded last. Applied on the meta device, before the weights exist
(``initialization.materialize`` then allocates each rank's shards only).

Sharding happens under Lightning's ``ModelParallelStrategy`` (its "data_parallel" mesh dimension, tensor
parallel size 1); activation checkpointing and compile also apply under DDP or on a single device. Parameter
names are unchanged by all three (``Module.compile`` compiles in place; the checkpoint wrapper's prefix is
stripped from state dicts), so checkpoints and the optimizer's parameter groups do not depend on them.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from components.config_error import require_choices
from components.model import MotifForCausalLM

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DtypeName = Literal["bfloat16", "float16", "float32"]


@dataclass(kw_only=True)
class ParallelismConfig:
    """Per-block wrappers; the FSDP2 fields take effect under ``ModelParallelStrategy`` only."""

    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of storing them (about a third more
    compute for a block's worth of activations instead of all of them)."""
    compile: bool = False
    """torch.compile each block (in place; one compiled graph reused by every block of the same shape)."""
    param_dtype: DtypeName | None = "bfloat16"
    """FSDP2 mixed precision: the dtype parameters are all-gathered in and blocks compute in ("bfloat16");
    null keeps the stored fp32. Master weights and optimizer state stay fp32 either way."""
    reduce_dtype: DtypeName = "float32"
    """FSDP2 mixed precision: the dtype gradients are reduce-scattered in."""
    reshard_after_forward: bool = True
    """FSDP2: free each block's gathered parameters after its forward (and gather again for the backward)."""

    def __post_init__(self) -> None:
        require_choices(self)


def apply_parallelism(net: MotifForCausalLM, config: ParallelismConfig, data_parallel_mesh: DeviceMesh | None) -> None:
    """Wrap ``net``'s blocks in place; shard over ``data_parallel_mesh`` when it is given (FSDP2)."""
    layers = net.model.layers
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[config.param_dtype] if config.param_dtype else None,
                                  reduce_dtype=DTYPES[config.reduce_dtype])
    for index, block in enumerate(layers):
        if config.activation_checkpointing:
            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if config.compile:
            block.compile()
        if data_parallel_mesh is not None:
            fully_shard(block, mesh=data_parallel_mesh, mp_policy=policy,
                        reshard_after_forward=config.reshard_after_forward)
        layers[index] = block
    if data_parallel_mesh is None:
        return
    shard = dict(mesh=data_parallel_mesh, mp_policy=policy, reshard_after_forward=config.reshard_after_forward)
    if not net.config.tie_word_embeddings:  # a tied matrix must stay in one unit: the root's
        fully_shard(net.model.embed_tokens, **shard)
        # the head's output is consumed at once by the loss: keep it gathered for the backward that follows
        fully_shard([net.model.norm, net.lm_head], **{**shard, "reshard_after_forward": False})
    fully_shard(net, **shard)
