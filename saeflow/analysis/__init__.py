"""Pure-numpy kernels of the feature analyses: arrays in, arrays out, no I/O.

Per-token kernels take `Entries` (the active entries of a sparse chunk or of a feature shard of
the CSC store) and return partial results that merge exactly across chunks; the writers in the
pipeline turn NaN in their float outputs into Parquet nulls.
"""
