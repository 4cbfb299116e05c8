"""Layer 3: distributed communication.

- ``layer3``: per backend, what sglang-fl sets up in each process (the torch.distributed
  backend SGLang's process groups use, server arguments, hooks).
- ``flagcx``: sglang-fl's own ctypes binding to FlagCX's C library (``libflagcx.so``), written
  from the documented v0.13.0 C API rather than imported from FlagCX's Python wrapper, so the
  plugin controls library discovery, version checks and error messages itself.
- ``flagcx_communicator``: FlagCX collectives for one group, on top of that binding.
- ``flagcx_process_group``: that communicator as a torch.distributed backend.
- ``varsized``: SGLang's variable-size collectives where SGLang has no PyNccl.
- ``sglang_hooks``: every SGLang hook Layer 3 installs.
"""
