"""Backends shipped with the core: ``reference`` (PyTorch) and ``flagos`` (our Triton kernels)."""
