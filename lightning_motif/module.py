"""MotifLM: the LightningModule that trains a Motif-2 causal language model."""

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.aggregation import MeanMetric

from components.config_error import ConfigError
from components.model import ModelConfig, MotifForCausalLM
from components.optim.param_groups import weight_decay_groups


class MotifLM(L.LightningModule):
    """Next-token cross-entropy over batches of token windows (batch, seq_len + 1).

    The network is built in ``configure_model`` so a strategy can build it on the meta device and shard it.
    ``optimizer`` and ``lr_scheduler`` are factories from the config (jsonargparse class_path + init_args);
    the scheduler is stepped after every optimizer step. Validation reports the token-weighted mean loss per
    domain and overall; perplexity is exp of that mean (torchmetrics aggregates it across ranks), which needs
    no materialised logits and so also holds once the loss is fused with the lm head.
    """

    def __init__(
        self,
        transformer: ModelConfig,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.transformer_config = transformer
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.net: MotifForCausalLM | None = None
        self.eval_domains: list[str] = []
        self.eval_loss = torch.nn.ModuleList()

    def check_data_fits(self, seq_len: int, vocab_size: int | None) -> None:
        """Raise ConfigError when the data cannot feed this model; ``vocab_size`` None means not known yet."""
        config = self.transformer_config
        if seq_len > config.max_position_embeddings:
            raise ConfigError("data", "seq_len", seq_len,
                              f"exceeds ModelConfig.max_position_embeddings = {config.max_position_embeddings}: "
                              "lower data seq_len or raise model.transformer.max_position_embeddings")
        if vocab_size is not None and vocab_size > config.vocab_size:
            raise ConfigError("ModelConfig", "vocab_size", config.vocab_size,
                              f"smaller than the tokenizer's {vocab_size} tokens: set model.transformer.vocab_size >= {vocab_size}")

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        self.eval_domains = list(getattr(datamodule, "val_domains", []))
        self.eval_loss = torch.nn.ModuleList(MeanMetric() for _ in range(len(self.eval_domains) + 1))

    def configure_model(self) -> None:
        if self.net is None:
            self.net = MotifForCausalLM(self.transformer_config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        tokens = batch.long()
        logits = self.net(tokens[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))

    def _eval_step(self, batch: torch.Tensor, dataloader_idx: int) -> None:
        loss = self._loss(batch)
        weight = batch.shape[0] * (batch.shape[1] - 1)
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

    def validation_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(weight_decay_groups(self.net))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def statistics(self) -> dict[str, torch.Tensor]:
        return self.net.statistics()


