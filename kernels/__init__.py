"""Fused ops: each file holds one op's kernels, autograd glue and the pure-PyTorch reference (the CPU path)."""
