"""Backends shipped with the core: ``reference`` (PyTorch) and ``flagos`` (FlagGems/Triton)."""
