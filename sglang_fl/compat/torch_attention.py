"""SGLang's ``torch_native`` attention backend, plus the attention logit softcapping it lacks.

``RadixAttention.logit_cap`` (Gemma 2's ``attn_logit_softcapping``: ``cap * tanh(s / cap)`` on
the scaled scores ``s`` before the softmax) is applied by SGLang's Triton, FlashInfer and
Ascend backends; ``torch_native`` calls ``scaled_dot_product_attention``, which has no cap, and
ignores it. Its module is the same file in every supported release (0.5.15-0.5.23).

:func:`softcapping_backend_cls` subclasses it minimally: layers without a cap run SGLang's own
code unchanged; for a capped layer SGLang still saves the KV cache and lays out q and the
output, and only the per-request attention is computed here, from the same KV-cache gather,
with SGLang's own sliding-window mask.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Iterator
from typing import Any

import torch

BACKEND_MODULE = "sglang.srt.layers.attention.torch_native_backend"


def softcapped_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    scale: float | None,
    cap: float,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Attention with tanh logit softcapping for one sequence, in fp32.

    ``query`` ``[heads, q_len, head_dim]``; ``key``/``value`` ``[kv_heads, kv_len, dim]`` (GQA:
    kv heads are shared by consecutive query heads, as SDPA's ``enable_gqa``); ``mask``
    ``[q_len, kv_len]``, True where a query may attend. Returns ``[heads, q_len, v_dim]`` in
    the query's dtype.
    """
    groups = query.shape[0] // key.shape[0]
    key = key.repeat_interleave(groups, dim=0).float()
    value = value.repeat_interleave(groups, dim=0).float()
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query.float(), key.transpose(-2, -1)) * scale
    scores = cap * torch.tanh(scores / cap)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), value).to(query.dtype)


@functools.cache
def softcapping_backend_cls() -> type:
    """``TorchNativeAttnBackend`` that applies ``layer.logit_cap`` (imports SGLang)."""
    from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend

    extend_signature = inspect.signature(TorchNativeAttnBackend._run_sdpa_forward_extend)
    decode_signature = inspect.signature(TorchNativeAttnBackend._run_sdpa_forward_decode)

    class SoftcappingTorchNativeAttnBackend(TorchNativeAttnBackend):
        """SGLang's torch_native backend; a layer's ``logit_cap`` (tanh) is applied."""

        _logit_cap: float = 0.0  # the cap of the layer being run (0: SGLang's own SDPA)

        def forward_extend(self, q, k, v, layer, forward_batch, *args, **kwargs):
            with self._capping(layer):
                return super().forward_extend(q, k, v, layer, forward_batch, *args, **kwargs)

        def forward_decode(self, q, k, v, layer, forward_batch, *args, **kwargs):
            with self._capping(layer):
                return super().forward_decode(q, k, v, layer, forward_batch, *args, **kwargs)

        def _run_sdpa_forward_extend(self, *args, **kwargs):
            if not self._logit_cap:
                return super()._run_sdpa_forward_extend(*args, **kwargs)
            call = _arguments(extend_signature, self, args, kwargs)
            return self._run_capped(call, call["extend_seq_lens"])

        def _run_sdpa_forward_decode(self, *args, **kwargs):
            if not self._logit_cap:
                return super()._run_sdpa_forward_decode(*args, **kwargs)
            call = _arguments(decode_signature, self, args, kwargs)
            return self._run_capped(call, torch.ones_like(call["seq_lens"]))

        @contextlib.contextmanager
        def _capping(self, layer: Any) -> Iterator[None]:
            self._logit_cap = _tanh_cap(layer)
            try:
                yield
            finally:
                self._logit_cap = 0.0

        def _run_capped(self, call: dict[str, Any], q_lens: torch.Tensor) -> torch.Tensor:
            """SGLang's per-request loop (queries are the last ``q_len`` of ``seq_len``
            positions), with :func:`softcapped_attention` in place of SDPA."""
            if call["encoder_lens"] is not None or call["is_cross_attn"]:
                raise NotImplementedError(
                    "sglang-fl's torch_native attention applies logit_cap to decoder "
                    "self-attention only, not to encoder or cross-attention layers"
                )
            query, output = call["query"], call["output"]
            start = 0
            for index in range(call["seq_lens"].shape[0]):
                kv_len, q_len = int(call["seq_lens"][index]), int(q_lens[index])
                tokens = call["req_to_token"][call["req_pool_indices"][index], :kv_len]
                per_req = query[start : start + q_len].movedim(0, 1)
                out = softcapped_attention(
                    per_req,
                    call["k_cache"][tokens].movedim(0, 1),
                    call["v_cache"][tokens].movedim(0, 1),
                    scale=call["scaling"],
                    cap=self._logit_cap,
                    mask=self._mask(call, q_len, kv_len, query.device),
                )
                output[start : start + q_len] = out.movedim(0, 1)
                start += q_len
            return output

        def _mask(self, call: dict[str, Any], q_len: int, kv_len: int, device) -> Any:
            """SGLang's sliding-window mask; a window as long as the sequence is causal."""
            window = call["sliding_window_size"]
            if not call["causal"] and window is None:
                return None  # decode: the one query is the last position and sees every key
            return self._make_sliding_window_mask(
                q_len=q_len, kv_len=kv_len, device=device, query_offset=kv_len - q_len,
                sliding_window_size=kv_len if window is None else window,
            )  # fmt: skip

    return SoftcappingTorchNativeAttnBackend


def _tanh_cap(layer: Any) -> float:
    cap = float(getattr(layer, "logit_cap", 0.0) or 0.0)
    if cap > 0 and getattr(layer, "logit_capping_method", "tanh") != "tanh":
        raise NotImplementedError(
            f"logit_capping_method {layer.logit_capping_method!r}: SGLang defines only 'tanh'"
        )
    return max(cap, 0.0)


def _arguments(
    signature: inspect.Signature, backend: Any, args: tuple, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """A ``_run_sdpa_forward_*`` call's arguments by name, defaults filled in."""
    bound = signature.bind(backend, *args, **kwargs)
    bound.apply_defaults()
    return bound.arguments
