"""``motif grow``: a trained model grown into a larger one that computes the same function, to train on from there
(the Motif-2-12.7B report, arXiv 2511.07464, Sec. 3: Motif-2.6B grown in width by HyperCloning, arXiv 2409.12903,
with GDA introduced at that step, and in depth by LLaMA-Pro block expansion, arXiv 2401.02415).

    motif grow --source runs/small/checkpoints/last.ckpt --target experiments/presets/motif-2-12.7b.yaml --output grown
    motif grow --source <Hugging Face folder> --target big.yaml --output grown --growth.noise 0.01 \
        --growth.insert_after '[3, 7]'

``source``: a checkpoint of ``motif fit`` (file or distributed-checkpoint folder) or of ``motif convert import``, or a
Hugging Face folder. ``target``: a model config YAML (a preset, or the ``model.yaml`` of an imported checkpoint).
Writes ``<output>/model.ckpt`` (train on with ``motif fit --model.transformer <output>/model.yaml
--model.init_weights_from <output>/model.ckpt``), ``model.yaml`` and ``growth.yaml``, which records what was done:
the width factors, which source head each target head copies, where blocks were inserted, the lambda_init each
moved layer was compensated for, the noise and, for models up to ``verify_max_parameters``, the largest
difference between the source's and the grown model's logits on random tokens (fp32). A target that cannot be
reached function-preservingly is refused with one line before any tensor is read; nothing is written to
``output`` until the grown checkpoint is whole (it is built in ``<output>.partial``).
"""

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from components.attention.differential_base import DifferentialConfig, lambda_init
from components.config_error import ConfigError
from components.growth import GrowthConfig, GrowthPlan, check_growth, grow
from components.model import ModelConfig, MotifForCausalLM
from components.model_size import model_size
from lightning_motif.interop.convert import IMPORTED_CHECKPOINT, IMPORTED_CONFIG, copy_tokenizer_files
from lightning_motif.interop.hf_config import model_config_dict, model_config_yaml
from lightning_motif.interop.weights import WeightSource, check_weights, open_weights
from lightning_motif.presets import load_model_config

GROWTH_RECORD = "growth.yaml"
VERIFY_TOKENS = 32


@dataclass(kw_only=True)
class GrowConfig:
    """What ``motif grow`` reads and writes."""

    source: str
    """The trained model: a checkpoint file, a distributed-checkpoint folder or a Hugging Face folder."""
    target: str
    """The grown model's config: a model config YAML (e.g. experiments/presets/motif-2-12.7b.yaml)."""
    output: str
    """A new folder for model.ckpt, model.yaml and growth.yaml (refused if it exists)."""
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    """Where blocks are inserted, symmetry-breaking noise and its seed."""
    verify_max_parameters: int = 1_000_000_000
    """Compare the two models' logits on random tokens when the grown model has at most this many parameters."""
    verbose: bool = True
    """Show progress."""


def _fail(field_name: str, value: object, fix: str) -> ConfigError:
    return ConfigError("GrowConfig", field_name, value, fix)


def _target_config(config: GrowConfig) -> ModelConfig:
    path = Path(config.target).expanduser()
    if not path.is_file():
        raise _fail("target", config.target, "no such file: give a model config YAML such as a preset")
    try:
        return load_model_config(path)
    except ConfigError:
        raise
    except Exception as error:
        raise _fail("target", config.target, f"not a model config ({str(error).splitlines()[0][:200]}): give a "
                                             "model config YAML such as experiments/presets/motif-2-12.7b.yaml")


def _attention_summary(config: ModelConfig) -> str:
    attention = config.attention
    fields = {k: v for k, v in asdict(attention).items() if k.startswith("num_") or k in ("signal_noise_ratio",
                                                                                         "head_dim")}
    return f"{type(attention).__name__}({', '.join(f'{k}={v}' for k, v in fields.items())})"


def _model_summary(config: ModelConfig) -> dict:
    return {"hidden_size": config.hidden_size, "num_layers": config.num_layers,
            "intermediate_size": config.mlp.intermediate_size, "attention": _attention_summary(config),
            "tie_word_embeddings": config.tie_word_embeddings, "parameters": model_size(config, 1).parameters}


def growth_record(config: GrowConfig, source: ModelConfig, target: ModelConfig, plan: GrowthPlan) -> dict:
    """What ``growth.yaml`` says was done."""
    heads = plan.heads
    record = {
        "source": config.source, "target": config.target, "source_model": _model_summary(source),
        "target_model": _model_summary(target),
        "width": {"hidden_copies": plan.width, "ffn_copies": plan.ffn,
                  "q_proj_slots_from_source": heads.q, "kv_slots_from_source": heads.k,
                  "o_proj_blocks_from_source": heads.o},
        "depth": {"layers_from_source": [layer for layer, _ in plan.layers],
                  "inserted_identity_blocks": [i for i, (_, inserted) in enumerate(plan.layers) if inserted]},
        "growth": asdict(config.growth),
    }
    if isinstance(source.attention, DifferentialConfig):
        schedules = source.attention.lambda_init_schedule, target.attention.lambda_init_schedule
        record["lambda_init_compensated"] = [
            {"layer": t, "source_layer": s, "lambda_init": [round(lambda_init(s, schedules[0]), 6),
                                                            round(lambda_init(t, schedules[1]), 6)]}
            for t, (s, _) in enumerate(plan.layers) if lambda_init(s, schedules[0]) != lambda_init(t, schedules[1])]
    return record


def _read(source: WeightSource, verbose: bool) -> dict[str, torch.Tensor]:
    return {name: source.tensor(name) for name in tqdm(source.names(), desc="[grow] reading", unit="tensor",
                                                         disable=not verbose)}


def _logit_difference(state: dict, grown: dict, source: ModelConfig, target: ModelConfig) -> dict:
    """Largest |logit difference| between the two models on random tokens, fp32 on the CPU."""
    tokens = torch.randint(0, source.vocab_size, (1, VERIFY_TOKENS), generator=torch.Generator().manual_seed(0))
    logits = []
    for config, tensors in ((source, state), (target, grown)):
        model = MotifForCausalLM(config)
        model.load_state_dict({n: t.float() for n, t in tensors.items()}, strict=not config.tie_word_embeddings)
        with torch.no_grad():
            logits.append(model.eval()(tokens))
    difference = float((logits[0] - logits[1]).abs().max())
    return {"tokens": VERIFY_TOKENS, "max_abs_logit_difference": difference,
            "max_abs_logit": float(logits[0].abs().max())}


def run(config: GrowConfig) -> Path:
    """Grow ``source`` into ``target``; returns the output folder."""
    target = _target_config(config)
    output = Path(config.output).expanduser()
    if output.exists():
        raise _fail("output", config.output, "exists: give a new folder (nothing is overwritten)")
    source = open_weights(config.source, "source")
    check_weights(source, source.config)
    plan = check_growth(source.config, target, config.growth)
    state = _read(source, config.verbose)
    if config.verbose:
        print(f"[grow] {_attention_summary(source.config)} x {source.config.num_layers} layers -> "
              f"{_attention_summary(target)} x {target.num_layers} layers", flush=True)
    with tqdm(total=source.config.num_layers, desc="[grow] growing", unit="layer", disable=not config.verbose) as bar:
        grown = grow(state, source.config, target, config.growth, on_layer=bar.update)
    record = growth_record(config, source.config, target, plan)
    if model_size(target, 1).parameters <= config.verify_max_parameters:
        record["verified"] = _logit_difference(state, grown, source.config, target)
    else:
        record["verified"] = f"skipped: more than verify_max_parameters = {config.verify_max_parameters}"
    if config.verbose:
        print(f"[grow] writing {output}", flush=True)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    partial.mkdir(parents=True)
    import lightning

    torch.save({"state_dict": {f"net.{name}": t for name, t in grown.items()},
                "hyper_parameters": {"transformer": model_config_dict(target)},
                "pytorch-lightning_version": lightning.__version__, "motif_grown_from": config.source},
               partial / IMPORTED_CHECKPOINT)
    (partial / IMPORTED_CONFIG).write_text(model_config_yaml(target))
    (partial / GROWTH_RECORD).write_text(yaml.safe_dump(record, sort_keys=False, width=120, default_flow_style=None))
    source_path = Path(config.source).expanduser()
    copy_tokenizer_files([source_path if source_path.is_dir() else source_path.parent], partial)
    os.replace(partial, output)
    if config.verbose:
        print(f"[grow] {output}: {record['verified']}", flush=True)
    return output
