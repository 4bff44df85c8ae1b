"""Measured latency: targets, ONNX export, the timing backends, the measurement cache.

Kept free of imports so that ``measurement.device_runtime`` loads on a device that has only numpy
and onnxruntime.
"""
