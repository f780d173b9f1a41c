"""Export and quantization: ONNX graphs of the networks, their INT8 rewrites and calibration.

The inference core builds its graphs with these on first use; ``semseg export`` writes them
for other runtimes.
"""
