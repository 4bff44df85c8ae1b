"""Costs computed from an architecture alone: params, FLOPs, MAC, kernels, memory (no measurement)."""
