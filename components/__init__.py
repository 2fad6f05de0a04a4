"""Pure-PyTorch building blocks of the Motif-2 transformer (no Lightning imports)."""
