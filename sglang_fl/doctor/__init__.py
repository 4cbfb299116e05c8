"""``sglang-fl doctor``: checks, without loading a model, that this machine's stack fits together
(config, SGLang release, platform contract, bundles, torch vs the accelerator, Triton, FlagGems,
FlagCX, torch_npu, the vendor backend). ``checks`` holds one function per check, ``cli`` the
command (``python -m sglang_fl.doctor`` runs it alone). Importing this package imports nothing.
"""
