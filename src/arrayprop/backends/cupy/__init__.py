"""The CuPy backend and everything CUDA."""
