"""Layer 3: distributed communication.

``flagcx`` is sglang-fl's own ctypes binding to FlagCX's C library (``libflagcx.so``), written
from the documented v0.13.0 C API rather than imported from FlagCX's Python wrapper, so the
plugin controls library discovery, version checks and error messages itself.
``flagcx_communicator`` runs collectives for one process group on top of that binding.
Wiring these into SGLang's ``GroupCoordinator`` is a separate step.
"""
