"""sglang-fl: run the unchanged SGLang server on any accelerator through FlagOS.

The package is loaded by SGLang through its own entry points (see ``sglang_fl.plugin``);
importing it has no side effects and pulls in neither torch nor SGLang.
"""

__version__ = "0.1.0"
