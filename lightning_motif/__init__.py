"""Lightning glue for Motif-2: the LightningModule, data pipeline, callbacks and the ``motif`` CLI."""
