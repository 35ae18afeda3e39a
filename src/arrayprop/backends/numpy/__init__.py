"""The NumPy backend and its fast kernels."""
