"""arrayprop: matrix-form backpropagation on any Array API backend."""

__version__ = "0.1.0"
