"""Benchmarks shipped with sglang-fl (``sglang-fl bench ...``); results go to docs/."""
