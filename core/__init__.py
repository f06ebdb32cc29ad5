"""Secateur's compression engine: loading, inventory, pruning, quantization, metrics, saving.

This package never imports Qt; the window in ``gui`` is a thin layer over it.
"""

__version__ = "0.1.0"
