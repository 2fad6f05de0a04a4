"""Model weights read tensor by tensor (and, for a sharded rank, row block by row block) from the three forms
a Motif model is kept in, by their Hugging Face names (``model.layers.0.self_attn.q_proj.weight``):

- a Lightning checkpoint file of ``motif fit`` (or ``motif convert import``): ``state_dict`` keys ``net.<name>``,
  memory-mapped, so reading a tensor (or some of its rows) reads only those bytes;
- a distributed-checkpoint folder of ``motif fit`` under FSDP2 (``meta.pt`` beside the shards): one tensor is
  assembled at a time from the shards that hold it;
- a Hugging Face folder (``config.json``, ``model.safetensors`` or shards with ``model.safetensors.index.json``).

``open_weights(path)`` picks the form; each source also gives the ModelConfig the weights belong to.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from components.config_error import ConfigError
from components.model import ModelConfig

STATE_PREFIX = "net."
DISTRIBUTED_METADATA = "meta.pt"
HF_CONFIG = "config.json"
HF_INDEX = "model.safetensors.index.json"
HF_SINGLE = "model.safetensors"
DROPPED = ("rotary_emb.inv_freq",)
"""Buffers some released checkpoints carry that the model recomputes (dropped on import)."""


def saved_model_config(checkpoint: dict) -> ModelConfig:
    """The ModelConfig a checkpoint's hyper-parameters hold: the dataclass itself, or (from ``motif fit``, whose
    LightningCLI saves the parsed config) its class_path / init_args form."""
    saved = checkpoint.get("hyper_parameters", {}).get("transformer")
    if saved is None:
        raise ConfigError("weights", "source", "hyper_parameters.transformer", "the checkpoint holds no model config")
    from lightning_motif.presets import as_model_config

    return as_model_config(saved)


class WeightSource:
    """Names, shapes and dtypes of a stored model's tensors, and their values one at a time."""

    config: ModelConfig

    def names(self) -> list[str]:
        raise NotImplementedError

    def shape_and_dtype(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        raise NotImplementedError

    def tensor(self, name: str) -> torch.Tensor:
        raise NotImplementedError

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of a tensor (all of a 0-d tensor): a sharded rank reads its own part only."""
        return self.tensor(name)[start:stop]

    def tensor_as(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The tensor in ``dtype``, contiguous, with no second full copy where the source allows it."""
        return self.tensor(name).to(dtype).contiguous()

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.names():
            yield name, self.tensor(name)


class CheckpointFile(WeightSource):
    def __init__(self, path: Path) -> None:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        self._state = {key[len(STATE_PREFIX):]: value for key, value in checkpoint["state_dict"].items()
                       if key.startswith(STATE_PREFIX)}
        self.config = saved_model_config(checkpoint)

    def names(self) -> list[str]:
        return list(self._state)

    def shape_and_dtype(self, name: str):
        return tuple(self._state[name].shape), self._state[name].dtype

    def tensor(self, name: str) -> torch.Tensor:
        return self._state[name].clone()

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        return self._state[name][start:stop].clone()

    def tensor_as(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        return self._state[name].to(dtype).contiguous()  # the memory-mapped tensor itself when the dtype matches


class DistributedCheckpoint(WeightSource):
    def __init__(self, path: Path) -> None:
        from torch.distributed.checkpoint import FileSystemReader

        self._path = path
        self.config = saved_model_config(torch.load(path / DISTRIBUTED_METADATA, map_location="cpu", weights_only=False))
        metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
        prefix = f"state_dict.{STATE_PREFIX}"
        self._meta = {key[len(prefix):]: value for key, value in metadata.items() if key.startswith(prefix)}

    def names(self) -> list[str]:
        return list(self._meta)

    def shape_and_dtype(self, name: str):
        meta = self._meta[name]
        return tuple(meta.size), meta.properties.dtype

    def load_into(self, state: dict[str, torch.Tensor]) -> None:
        """Fill ``state`` ({name: tensor or FSDP2 DTensor}) in place, all at once: with DTensors each rank reads
        only the stored pieces that overlap its own shards (collectively, when torch.distributed is up)."""
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp

        targets = {f"{STATE_PREFIX}{name}": tensor for name, tensor in state.items() if name in self._meta}
        dcp.load({"state_dict": targets}, checkpoint_id=str(self._path), no_dist=not dist.is_initialized())

    def tensor(self, name: str) -> torch.Tensor:
        import torch.distributed.checkpoint as dcp

        shape, dtype = self.shape_and_dtype(name)
        state = {"state_dict": {f"{STATE_PREFIX}{name}": torch.empty(shape, dtype=dtype)}}
        dcp.load(state, checkpoint_id=str(self._path), no_dist=True)
        return state["state_dict"][f"{STATE_PREFIX}{name}"]


class HuggingFaceFolder(WeightSource):
    def __init__(self, path: Path) -> None:
        from lightning_motif.interop.hf_config import from_config_json

        self._path = path
        self.config = from_config_json(json.loads((path / HF_CONFIG).read_text()))
        if (path / HF_INDEX).is_file():
            weight_map = json.loads((path / HF_INDEX).read_text())["weight_map"]
        elif (path / HF_SINGLE).is_file():
            weight_map = dict.fromkeys(self._keys(path / HF_SINGLE), HF_SINGLE)
        else:
            raise ConfigError("convert", "source", str(path), f"no {HF_INDEX} or {HF_SINGLE}: not a Hugging Face model folder")
        self._file_of = {name: file for name, file in weight_map.items() if not name.endswith(DROPPED)}
        self._open: dict[str, object] = {}

    @staticmethod
    def _keys(file: Path) -> list[str]:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return list(handle.keys())

    def _handle(self, name: str):
        from safetensors import safe_open

        file = self._file_of[name]
        if file not in self._open:
            if not (self._path / file).is_file():
                raise ConfigError("convert", "source", str(self._path / file), f"missing shard (it holds {name})")
            self._open[file] = safe_open(str(self._path / file), framework="pt")
        return self._open[file]

    def names(self) -> list[str]:
        return list(self._file_of)

    def shape_and_dtype(self, name: str):
        view = self._handle(name).get_slice(name)
        return tuple(view.get_shape()), _SAFETENSORS_DTYPES[view.get_dtype()]

    def tensor(self, name: str) -> torch.Tensor:
        return self._handle(name).get_tensor(name)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        view = self._handle(name).get_slice(name)
        return view[start:stop] if len(view.get_shape()) else view[:]


_SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def open_weights(path: str | Path, field: str = "source") -> WeightSource:
    """The weights at ``path``: a checkpoint file, a distributed-checkpoint folder or a Hugging Face folder.
    ConfigError naming ``field`` when it is none of them or cannot be read."""
    path = Path(path).expanduser()
    try:
        if path.is_dir() and (path / HF_CONFIG).is_file():
            return HuggingFaceFolder(path)
        if path.is_dir() and (path / DISTRIBUTED_METADATA).is_file():
            return DistributedCheckpoint(path)
        if path.is_file():
            return CheckpointFile(path)
    except ConfigError:
        raise
    except Exception as error:  # a file cut short, or not a checkpoint
        raise ConfigError("weights", field, str(path), f"cannot be read ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}): give a checkpoint file, a "
                          "distributed-checkpoint folder or a Hugging Face folder") from error
    raise ConfigError("weights", field, str(path), "no such checkpoint file, distributed-checkpoint folder (meta.pt) "
                      "or Hugging Face folder (config.json)")


def expected_tensors(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], bool]]:
    """{name: (shape, required)} of the model ``config`` builds (on the meta device); a tied lm_head is optional
    (Hugging Face checkpoints of tied models leave it out)."""
    from components.model import MotifForCausalLM

    with torch.device("meta"):
        state = MotifForCausalLM(config).state_dict()
    return {name: (tuple(t.shape), not (config.tie_word_embeddings and name == "lm_head.weight"))
            for name, t in state.items()}


FLOATS = (torch.bfloat16, torch.float16, torch.float32, torch.float64)


def check_weights(source: WeightSource, config: ModelConfig, field: str = "source") -> None:
    """ConfigError naming the first tensor that is missing, extra, misshapen or of a dtype that is not a float."""
    expected, present = expected_tensors(config), set(source.names())
    for name, (shape, required) in expected.items():
        if required and name not in present:
            raise ConfigError("weights", field, name, "missing tensor: the weights do not match the model config")
    for name in source.names():
        if name not in expected:
            raise ConfigError("weights", field, name, "unexpected tensor: the weights do not match the model config")
        shape, dtype = source.shape_and_dtype(name)
        if shape != expected[name][0]:
            raise ConfigError("weights", field, name, f"shape {list(shape)} where the model config needs "
                              f"{list(expected[name][0])}")
        if dtype not in FLOATS:
            raise ConfigError("weights", field, name, f"dtype {dtype}: use bfloat16, float16 or float32 weights")
