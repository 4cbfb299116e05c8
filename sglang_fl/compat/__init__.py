"""The one place that knows how SGLang releases differ; everything else asks here.

- :mod:`.versions`: the tested release train, the supported range, the untested opt-in.
- :mod:`.fused_ops`: the fused-op base class, OOT registration, binding (Layer 2).
- :mod:`.platform_api`: the platform hooks each release reads, from sglang-fl's declarations.
- :mod:`.platform_contract`: does a platform class fit a release's platform API?
- :mod:`.distributed`: GroupCoordinator flags, TP groups (Layer 3).
- :mod:`.hooks`: SGLang's hook registry, every target resolved when its hook is registered.
- :mod:`.torch_routes`: SGLang's Triton-only paths and the PyTorch routes a platform declares
  for them (:mod:`.torch_attention`: torch_native attention with the logit cap), per release.
- :mod:`.model_support`: the architectures SGLang cannot serve here, refused at startup.

None of them imports SGLang at import time (the settings and the CLI work without it); each
imports it when first asked about the installed release.
"""
