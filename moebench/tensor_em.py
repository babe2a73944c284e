"""Placeholder module: replaced by the tensor_em implementation."""
