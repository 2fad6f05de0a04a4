"""MotifLM: the LightningModule that trains a Motif-2 causal language model."""

from contextlib import nullcontext
from typing import Literal, get_args

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.strategies import ModelParallelStrategy, ParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torch.distributed.tensor import DTensor
from torchmetrics.aggregation import MeanMetric

from components.config_error import ConfigError, require, require_choice
from components.documents import PackedDocuments
from components.model import ModelConfig, MotifForCausalLM
from components.attention.base import Attention
from components.optim.param_groups import motif_param_groups
from lightning_motif.callbacks.cadence import training_batch_index
from kernels.linear_cross_entropy import IGNORE_INDEX
from lightning_motif.data.batch import is_packed_sft, step_tokens
from lightning_motif.initialization import load_weights, materialize
from lightning_motif.interop.weights import WeightSource, check_weights, open_weights
from lightning_motif.parallelism import ParallelismConfig, apply_parallelism
from lightning_motif.resume_check import model_differences

NonFinitePolicy = Literal["skip", "stop"]


class NonFiniteTrainingError(RuntimeError):
    """Training produced a non-finite loss or gradient norm and the policy (``on_nonfinite``) says stop."""


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


class MotifLM(L.LightningModule):
    """Next-token cross-entropy over token windows (sequences, seq_len + 1).

    One training batch is one optimizer step: the curriculum stream decides how many sequences a step has (the
    batch ramps) and how many go through one forward pass (``micro_batch_size``), so the module accumulates
    gradients over the micro-batches itself (Lightning's manual optimization) and normalises the loss by the
    step's tokens. Packed SFT steps (``lightning_motif.data.packing``) bring their own targets and sample ids:
    attention stays within each sample, and the loss is the mean over the trained (assistant) tokens of all
    ranks. Gradients are clipped to a global norm of ``gradient_clip_val`` (None: no clipping), the norm
    taken over all parameters also when FSDP2 shards them. The initial weights are a function of ``init_seed``.

    A step whose loss or gradient norm is not finite (on any rank) is skipped, logged (``train/skipped_steps``)
    and its gradients dropped (``on_nonfinite: skip``), or stops the run (``stop``); more than
    ``max_consecutive_skips`` skipped steps in a row stop it too. A checkpoint is never written from non-finite
    weights.

    Parameters reach the optimizer in three named groups flagged for MuonClip (hidden matrices to Muon,
    embeddings / lm_head and vectors to AdamW; see ``motif_param_groups``); a plain AdamW ignores the flag.
    With ``track_max_logits`` every training forward measures each query head's largest attention logit, for
    the dashboard (``model/layer_XX/max_logit``) and for an optimizer with QK-clip, which rescales the heads
    above its tau after each step (``model/layer_XX/qk_clipped_heads``). The measurement (a Triton kernel on GPU,
    about 14% of the attention's time at the 12.7B shapes; benchmarks/RESULTS.md) runs by default (None) only
    when the optimizer clips; set true to watch the logits under another optimizer.

    The network is built in ``configure_model``, where ``parallelism`` wraps its blocks (activation
    checkpointing, torch.compile) and, under ``ModelParallelStrategy``, shards them with FSDP2.
    ``optimizer`` and ``lr_scheduler`` are factories from the config (jsonargparse class_path + init_args);
    the scheduler is stepped after every optimizer step. Validation reports the token-weighted mean loss per
    domain and overall; perplexity is exp of that mean (torchmetrics aggregates it across ranks), which needs
    no materialised logits and so also holds once the loss is fused with the lm head.

    Args:
        transformer: The network: sizes and the attention / MLP implementations (a preset file or inline YAML).
        optimizer: Optimizer over the three parameter groups (MuonClip, or torch.optim.AdamW for the baseline).
        lr_scheduler: Stepped after every optimizer step; WarmupStableDecayLR spans trainer.max_steps unless its
            total_steps is set.
        gradient_clip_val: Global gradient norm to clip to (null: no clipping).
        init_seed: Seed of the initial weights (independent of everything that runs before).
        track_max_logits: Measure each query head's largest attention logit every training step (null: only when
            the optimizer clips).
        parallelism: Activation checkpointing, torch.compile and FSDP2 settings per block.
        on_nonfinite: What a non-finite loss or gradient norm does: skip the step, or stop the run.
        max_consecutive_skips: Stop after this many skipped steps in a row.
        init_weights_from: Start from these weights (a checkpoint file, a distributed-checkpoint folder or a
            Hugging Face folder of the same model) with a fresh optimizer, schedule and data stream; under FSDP2
            each rank reads only its shards. Unlike --ckpt_path, nothing else of the run is restored.
    """

    def __init__(
        self,
        transformer: ModelConfig,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        gradient_clip_val: float | None = 1.0,
        init_seed: int = 0,
        track_max_logits: bool | None = None,
        parallelism: ParallelismConfig = ParallelismConfig(),
        on_nonfinite: NonFinitePolicy = "skip",
        max_consecutive_skips: int = 10,
        init_weights_from: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.gradient_clip_val = gradient_clip_val
        self.init_seed = init_seed
        self._track_max_logits_setting = track_max_logits
        self.track_max_logits = bool(track_max_logits)
        if gradient_clip_val is not None:
            require(gradient_clip_val > 0, self, "gradient_clip_val", "use a positive norm such as 1.0, or null for no clipping")
        self.parallelism = parallelism
        self.on_nonfinite, self.max_consecutive_skips = on_nonfinite, max_consecutive_skips
        require_choice(self, "on_nonfinite", get_args(NonFinitePolicy))
        require(max_consecutive_skips >= 0, self, "max_consecutive_skips", "use 0 or more (0: stop at the first)")
        self.skipped_steps, self.consecutive_skips = 0, 0
        self.init_weights_from = init_weights_from
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.transformer_config = transformer
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.net: MotifForCausalLM | None = None
        self.eval_domains: list[str] = []
        self.eval_loss = torch.nn.ModuleList()

    def check_data_fits(self, seq_len_field: str, seq_len: int, vocab_size: int | None) -> None:
        """Raise ConfigError when the data cannot feed this model: sequences longer than the model's positions
        (``seq_len_field`` names the data field that asks for them) or a tokenizer larger than its vocabulary
        (``vocab_size`` None: not known yet)."""
        config = self.transformer_config
        if seq_len > config.max_position_embeddings:
            raise ConfigError("data", seq_len_field, seq_len,
                              f"exceeds ModelConfig.max_position_embeddings = {config.max_position_embeddings}: "
                              "use shorter sequences or raise model.transformer.max_position_embeddings")
        if vocab_size is not None and vocab_size > config.vocab_size:
            raise ConfigError("ModelConfig", "vocab_size", config.vocab_size,
                              f"smaller than the tokenizer's {vocab_size} tokens: set model.transformer.vocab_size >= {vocab_size}")

    def setup(self, stage: str) -> None:
        if self.trainer.precision == "16-mixed":
            raise ConfigError("trainer", "precision", "16-mixed",
                              "fp16 loss scaling is not supported: use bf16-mixed (or 32-true with "
                              "model.parallelism.param_dtype: bfloat16 under FSDP2)")
        strategy = self.trainer.strategy
        if isinstance(strategy, ModelParallelStrategy) and strategy._tensor_parallel_size not in ("auto", 1):
            raise ConfigError("ModelParallelStrategy", "tensor_parallel_size", strategy._tensor_parallel_size,
                              "tensor parallelism is not implemented: use 1 (FSDP2 over all devices)")
        datamodule = self.trainer.datamodule
        self.eval_domains = list(getattr(datamodule, "val_domains", []))
        self.eval_loss = torch.nn.ModuleList(MeanMetric() for _ in range(len(self.eval_domains) + 1))

    def configure_model(self) -> None:
        """Build on the meta device, wrap and shard, then allocate and initialise only this rank's part on its
        device (``initialization.materialize``: the weights depend on init_seed alone, not on the sharding or
        on what ran before)."""
        if self.net is None:
            with torch.device("meta"):
                self.net = MotifForCausalLM(self.transformer_config)
            sharded = isinstance(self.trainer.strategy, ModelParallelStrategy)
            apply_parallelism(self.net, self.parallelism, self.device_mesh["data_parallel"] if sharded else None)
            materialize(self.net, self.trainer.strategy.root_device, self.init_seed)
            if self.init_weights_from is not None:
                load_weights(self.net, self.initial_weights())

    def initial_weights(self) -> WeightSource:
        """The weights ``init_weights_from`` names, checked against this model (ConfigError naming the field)."""
        source = open_weights(self.init_weights_from, "init_weights_from")
        differences = model_differences(self.transformer_config, source.config)
        if differences:
            raise ConfigError(type(self).__name__, "init_weights_from", self.init_weights_from,
                              f"the weights belong to another model ({differences}): use their model config")
        check_weights(source, self.transformer_config, "init_weights_from")
        return source

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids)

    def _attention_layers(self) -> list[Attention]:
        return [m for m in self.net.modules() if isinstance(m, Attention)]

    def _loss_sum(self, windows: torch.Tensor, targets: torch.Tensor | None = None,
                  documents: torch.Tensor | None = None) -> torch.Tensor:
        """Summed next-token cross-entropy of windows (sequences, seq_len + 1), in fp32; SFT rows bring their own
        ``targets`` (-100: not trained) and packed ``documents`` (sample ids)."""
        tokens = windows.long()
        targets = tokens[:, 1:] if targets is None else targets.long()
        packed = None if documents is None else PackedDocuments(documents)
        return self.net(tokens[:, :-1], targets=targets, documents=packed)

    def _trained_tokens(self, batch: dict | torch.Tensor, windows: torch.Tensor) -> torch.Tensor | int:
        """What the step's loss sum is divided by: every window token, or for SFT rows the trained targets as a
        mean over ranks (so that the gradients, averaged over ranks, are those of the mean over all of them)."""
        if not is_packed_sft(batch):
            return windows.shape[0] * (windows.shape[1] - 1)
        trained = (batch["targets"] != IGNORE_INDEX).sum().float()
        return (self._sum_over_ranks(trained) / self.trainer.world_size).clamp(min=1.0)

    def training_step(self, batch: dict | torch.Tensor, batch_idx: int) -> None:
        windows, micro_batch_size = step_tokens(batch)
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        step_tokens_count = self._trained_tokens(batch, windows)
        micro_batches = windows.split(micro_batch_size)
        targets, documents = ([batch[key].split(micro_batch_size) for key in ("targets", "documents")]
                              if is_packed_sft(batch) else ([None] * len(micro_batches),) * 2)
        step_loss = torch.zeros((), device=windows.device)
        for attention in self._attention_layers():
            attention.reset_max_logits()
            attention.track_max_logits = self.track_max_logits
        for i, micro_batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            with nullcontext() if last or not isinstance(self.trainer.strategy, ParallelStrategy) \
                    else self.trainer.strategy.block_backward_sync():  # all-reduce gradients once per step
                loss = self._loss_sum(micro_batch, targets[i], documents[i]) / step_tokens_count
                self.manual_backward(loss)
            step_loss += loss.detach()
        for attention in self._attention_layers():
            attention.track_max_logits = False  # validation does not pay for the measurement
        params = [p for p in self.parameters() if p.grad is not None]
        grad_norm = self._global_grad_norm(params)
        if self._all_finite(step_loss, grad_norm):
            self.consecutive_skips = 0
            if self.gradient_clip_val is not None:
                torch.nn.utils.clip_grads_with_norm_(params, self.gradient_clip_val, grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        else:
            self._skip_step(step_loss, grad_norm)
        optimizer.zero_grad(set_to_none=True)
        # the step's loss over all ranks (each holds the same number of tokens), and the pre-clipping norm
        self.log("train/loss", step_loss, prog_bar=True, sync_dist=True, batch_size=windows.shape[0])
        self.log("train/grad_norm", grad_norm, batch_size=windows.shape[0])
        self.log("train/skipped_steps", float(self.skipped_steps), batch_size=windows.shape[0])

    @staticmethod
    def _global_grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
        """L2 norm of the gradients of ``params``: of the whole gradient under DDP (already all-reduced) and,
        under FSDP2, over every rank's shards (the DTensor norm reduced across the mesh)."""
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        return norm.full_tensor() if isinstance(norm, DTensor) else norm

    def _sum_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        if isinstance(self.trainer.strategy, ParallelStrategy) and self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(value, reduce_op="sum")
        return value

    def _all_finite(self, step_loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        """Whether loss and gradient norm are finite on every rank (one decision for all, so that ranks never
        disagree about stepping the optimizer)."""
        bad = (~torch.isfinite(step_loss) | ~torch.isfinite(grad_norm)).float()
        return not bool(self._sum_over_ranks(bad) > 0)

    def _skip_step(self, step_loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.skipped_steps += 1
        self.consecutive_skips += 1
        where = (f"step {training_batch_index(self.trainer)}: loss {float(step_loss):.4g} (this rank), gradient norm {float(grad_norm):.4g}")
        if self.on_nonfinite == "stop":
            raise NonFiniteTrainingError(f"non-finite training {where}; stopping (model.on_nonfinite: stop). "
                                         "Resume from the last checkpoint with a lower learning rate, or use skip")
        if self.consecutive_skips > self.max_consecutive_skips:
            raise NonFiniteTrainingError(f"{self.consecutive_skips} non-finite steps in a row, the last at {where}; "
                                         "stopping (model.max_consecutive_skips). Resume from the last checkpoint "
                                         "with a lower learning rate")
        rank_zero_warn(f"skipping the optimizer step: non-finite {where} ({self.skipped_steps} skipped so far)")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Refuse (on every rank alike) to write weights that are not finite; the previous checkpoint stays."""
        names, params = zip(*self.named_parameters())
        finite = torch.stack([torch.isfinite(_local(p.detach())).all() for p in params]).cpu()  # one device sync
        bad = [name for name, ok in zip(names, finite.tolist()) if not ok]
        if self._sum_over_ranks(torch.tensor(float(len(bad)), device=self.device)) > 0:
            raise NonFiniteTrainingError(f"refusing to save a checkpoint at step {self.global_step}: non-finite weights "
                                         f"in {bad[:3] or 'another rank'}; the previous checkpoint is kept")
        checkpoint["motif_skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_steps = checkpoint.get("motif_skipped_steps", 0)

    def _eval_step(self, batch: dict | torch.Tensor, dataloader_idx: int) -> None:
        if is_packed_sft(batch):  # the mean over the trained (assistant) tokens
            weight = int((batch["targets"] != IGNORE_INDEX).sum())
            if weight == 0:
                return
            loss = self._loss_sum(batch["tokens"], batch["targets"], batch["documents"]) / weight
        else:
            weight = batch.shape[0] * (batch.shape[1] - 1)
            loss = self._loss_sum(batch) / weight
        self.eval_loss[0].update(loss, weight)
        if dataloader_idx + 1 < len(self.eval_loss):  # a per-domain loader of the DataModule
            self.eval_loss[dataloader_idx + 1].update(loss, weight)

    def _eval_epoch_end(self, prefix: str) -> None:
        if self.eval_loss[0].update_count == 0:
            return
        overall = self.eval_loss[0].compute()
        self.log_dict({f"{prefix}/loss": overall, f"{prefix}/ppl": torch.exp(overall)}, prog_bar=True, sync_dist=False)
        for domain, metric in zip(self.eval_domains, self.eval_loss[1:]):
            if metric.update_count:
                self.log(f"{prefix}/loss_{domain}", metric.compute())
        for metric in self.eval_loss:
            metric.reset()

    def validation_step(self, batch: dict | torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        try:
            optimizer = self.optimizer_factory(motif_param_groups(self.net))
        except ConfigError:  # ours already names the field
            raise
        except ValueError as error:  # torch's optimizers check their arguments (lr, betas, eps, ...)
            raise ConfigError("model", "optimizer", str(error),
                              "fix model.optimizer.init_args (a positive lr, betas in [0, 1), ...)") from error
        if getattr(optimizer, "qk_clip_tau", None) is not None:
            if self._track_max_logits_setting is False:
                raise ConfigError(type(self).__name__, "track_max_logits", False,
                                  "QK-clip needs the attention logits measured: set it to true (or leave it unset) "
                                  "or set the optimizer's qk_clip_tau to null")
            self.track_max_logits = True
            optimizer.set_qk_clip_sources([attention.qk_clip_target for attention in self._attention_layers()])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, **self._schedule_length())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _schedule_length(self) -> dict[str, int]:
        """``total_steps`` = trainer.max_steps for a scheduler configured with ``total_steps: null`` (the factory
        from the config is a partial holding its arguments), so the schedule and the run end together."""
        if getattr(self.scheduler_factory, "keywords", {}).get("total_steps", 0) is not None:
            return {}
        if self.trainer.max_steps < 1:
            raise ConfigError("trainer", "max_steps", self.trainer.max_steps,
                              "the learning-rate schedule spans trainer.max_steps: set it (or the scheduler's total_steps)")
        return {"total_steps": self.trainer.max_steps}

    def statistics(self) -> dict[str, torch.Tensor]:
        stats = self.net.statistics()
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        clipped = getattr(optimizers[0], "clipped_heads", []) if optimizers else []
        stats.update({f"layer_{i:02d}/qk_clipped_heads": torch.tensor(n) for i, n in enumerate(clipped)})
        return stats


