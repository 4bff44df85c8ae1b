"""Estimated latency: the guideline model, per-block lookup tables, the learned predictor, calibration."""
