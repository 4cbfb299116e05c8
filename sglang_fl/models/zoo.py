"""The model zoo: tiny seeded checkpoints of the architectures SGLang serves, generated locally.

Why: the CPU-reference platform must be shown to serve more than one architecture, and every
architecture reaches different SGLang code (rope scalings, sliding windows, softcapping, q/k
norms, MoE routing, MLA). Each zoo model is a genuine checkpoint of its architecture that HF
transformers and SGLang both load, small enough to load and generate in seconds on a CPU, and
built like the embedded model (:mod:`sglang_fl.models.embedded`) so greedy decoding in fp32 can
be compared token by token:

* One table, :data:`ZOO_MODELS`, declares every model: its ``config.json`` fields, the parts its
  layers are made of (attention, MLP, norms) and any init overrides. Nothing else differs.
* Every model shares the embedded model's tokenizer (its files are copied; vocabulary 1024), so
  one list of prompt ids serves the whole zoo.
* The checkpoint layout (tensor names and shapes, in the format of released checkpoints: MoE
  experts one tensor per expert, GPT-2's Conv1D weights ``[in, out]``) is written out here
  rather than read from a transformers model: the files do not depend on the installed
  transformers (whose in-memory MoE layout differs from the checkpoint format) or its init code.
  The tests load every model in transformers and check that no tensor is missing or unexpected.
* Weights are drawn seeded, in layout order, and scaled like the embedded model's (large, so
  top-1/top-2 logit gaps are large compared with fp32 kernel differences). Untied ``lm_head``
  rows of tokens that are special or not printable ASCII are zero, as in the embedded model.
  Tied models (Gemma 2, Gemma 3 and GPT-2, as released; SGLang always ties Gemma 2 and GPT-2)
  shrink those embedding rows instead, and use small embeddings with a large final-norm scale:
  with the embedding as ``lm_head``, a large input embedding dominates the last hidden state
  and greedy decoding repeats the last token forever.
* Features whose effect must be visible in a short test are sized for it: sliding windows of 8
  tokens, rope scalings whose original context is short enough to change the frequencies used
  at the first few dozen positions, a Gemma 2 attention softcap that changes greedy ids (at
  Gemma 2's own 50 these tiny models' attention logits never reach it), a DeepSeek
  ``routed_scaling_factor`` other than 1.
* The reference is HF's eager attention: its SDPA path skips Gemma 2's attention softcapping.

A model lands in ``<cache>/sglang-fl-zoo-<name>-<spec hash>``, built in a temporary sibling
directory and renamed into place (the embedded model's scheme, shared code).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sglang_fl.models import embedded

if TYPE_CHECKING:
    import torch

ZOO_PREFIX = "sglang-fl-zoo"

# Bump when the generation procedure changes in a way the spec does not show.
GENERATOR_VERSION = 1

# The embedded model's tokenizer files, copied into every zoo model.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# config.json fields every zoo model shares (the shared tokenizer's ids; fp32 weights).
COMMON_CONFIG: dict[str, Any] = {
    "vocab_size": embedded.VOCAB_SIZE,
    "bos_token_id": embedded.ENDOFTEXT_ID,
    "eos_token_id": embedded.ENDOFTEXT_ID,
    "pad_token_id": embedded.ENDOFTEXT_ID,
    "torch_dtype": "float32",
    "use_cache": True,
    "initializer_range": 0.02,
}

# The sizes most zoo models use; a model's own config entries win.
DECODER_SIZES: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "attention_dropout": 0.0,
}

# Init parameters the embedded model does not have. tied_other_scale: in a tied model the
# embedding rows of special and non-printable tokens are scaled by it (their logits stay small,
# so greedy output stays printable, and the tokens remain usable in prompts).
ZOO_INIT: dict[str, Any] = {"tied_other_scale": 0.1}

# The prompts zoo comparisons use (the tests check greedy margins on exactly these): short
# ones, and one longer than every zoo sliding window. 16 new tokens each.
PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
    "The harbor town woke slowly on winter mornings. Fishing boats rocked against the pier "
    "while gulls argued",
)
GREEDY_STEPS = 16

LLAMA_NORMS = ("input_layernorm", "post_attention_layernorm")
GEMMA_NORMS = (*LLAMA_NORMS, "pre_feedforward_layernorm", "post_feedforward_layernorm")
# Gemma's norms scale by (1 + weight): the same effective scale range as the other models'.
GEMMA_INIT = {"norm_range": [-0.5, 0.5]}


@dataclass(frozen=True)
class Parts:
    """What a decoder layer is made of, in checkpoint terms.

    attention: ``qkv`` (separate projections), ``fused_qkv`` (Phi-3's ``qkv_proj``), ``mla``
               (DeepSeek's multi-head latent attention).
    qkv_bias:  q/k/v projections carry a bias.
    qk_norm:   None, ``head`` (one weight of ``head_dim``: Qwen3, Gemma 3) or ``proj`` (over
               the whole projection: OLMo 2).
    mlp:       ``gated`` (gate/up/down), ``fused_gated`` (``gate_up_proj``), ``moe`` (router
               plus per-expert gated MLPs) or ``deepseek_moe`` (dense for the first
               ``first_k_dense_replace`` layers, then routed plus shared experts).
    norms:     the layer's norm weights, by name.
    """

    attention: str = "qkv"
    qkv_bias: bool = False
    qk_norm: str | None = None
    mlp: str = "gated"
    norms: tuple[str, ...] = LLAMA_NORMS


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: its name, what it exercises, its config and how its tensors are laid out.

    ``layout`` is ``decoder`` (``model.layers.N``, described by ``parts``) or ``gpt2``.
    ``config`` holds the architecture's own ``config.json`` fields; :data:`COMMON_CONFIG` and,
    for decoders, :data:`DECODER_SIZES` fill in the rest. ``init`` overrides
    :data:`embedded.INIT` entries (plus ``final_norm_range`` for the last norm).
    """

    name: str
    feature: str
    config: dict[str, Any]
    layout: str = "decoder"
    parts: Parts = field(default_factory=Parts)
    init: dict[str, Any] = field(default_factory=dict)


ZOO_MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        "llama3",
        "Llama 3: llama3 rope scaling (original context 32: most frequencies rescaled)",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
        },
    ),
    ZooModel(
        "mistral",
        "Mistral: sliding-window attention (window 8)",
        {
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "sliding_window": 8,
            "tie_word_embeddings": False,
        },
    ),
    ZooModel(
        "qwen2",
        "Qwen2: q/k/v bias",
        {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": 2,
            "tie_word_embeddings": False,
        },
        parts=Parts(qkv_bias=True),
    ),
    ZooModel(
        "qwen3",
        "Qwen3: per-head q/k RMSNorm",
        {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "head_dim": 16,
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "attention_bias": False,
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": 2,
            "tie_word_embeddings": False,
        },
        parts=Parts(qk_norm="head"),
    ),
    ZooModel(
        "qwen3-moe",
        "Qwen3-MoE: softmax top-2 of 8 experts, renormalized; q/k norm",
        {
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "head_dim": 16,
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "attention_bias": False,
            "num_experts": 8,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "norm_topk_prob": True,
            "router_aux_loss_coef": 0.001,
            "output_router_logits": False,
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": 2,
            "tie_word_embeddings": False,
        },
        parts=Parts(qk_norm="head", mlp="moe"),
    ),
    ZooModel(
        "gemma2",
        "Gemma 2: attention (cap 6, small enough to change greedy ids) and final logit "
        "softcapping, alternating sliding window (8), GeluAndMul (tanh), (1 + w) norms, tied",
        {
            "architectures": ["Gemma2ForCausalLM"],
            "model_type": "gemma2",
            "head_dim": 16,
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_act": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 16,
            "attn_logit_softcapping": 6.0,
            "final_logit_softcapping": 30.0,
            "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_theta": 10000.0,
            "attention_bias": False,
            "tie_word_embeddings": True,
        },
        parts=Parts(norms=GEMMA_NORMS),
        init={**GEMMA_INIT, "embed_std": 0.02, "final_norm_range": [30.0, 50.0]},
    ),
    ZooModel(
        "gemma3",
        "Gemma 3 (text): q/k Gemma3RMSNorm, local/global rope bases, sliding window (8) "
        "on layer 0, GeluAndMul (tanh), tied embeddings",
        {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "head_dim": 16,
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 16,
            "attn_logit_softcapping": None,
            "final_logit_softcapping": None,
            "sliding_window": 8,
            "sliding_window_pattern": 2,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "rope_scaling": None,
            "attention_bias": False,
            "tie_word_embeddings": True,
        },
        parts=Parts(qk_norm="head", norms=GEMMA_NORMS),
        init={**GEMMA_INIT, "embed_std": 0.01, "final_norm_range": [100.0, 150.0]},
    ),
    ZooModel(
        "phi3",
        "Phi-3: long-rope (short factors; prompts stay inside the original context), fused "
        "qkv_proj and gate_up_proj",
        {
            "architectures": ["Phi3ForCausalLM"],
            "model_type": "phi3",
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "max_position_embeddings": 16384,
            "original_max_position_embeddings": 1024,
            "rope_scaling": {
                "type": "longrope",
                "short_factor": [1.0, 1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0],
                "long_factor": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0],
            },
            "partial_rotary_factor": 1.0,
            "sliding_window": None,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "tie_word_embeddings": False,
        },
        parts=Parts(attention="fused_qkv", mlp="fused_gated"),
    ),
    ZooModel(
        "olmo2",
        "OLMo 2: q/k RMSNorm over the whole projection, post-sublayer norms only",
        {
            "architectures": ["Olmo2ForCausalLM"],
            "model_type": "olmo2",
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "attention_bias": False,
            "tie_word_embeddings": False,
        },
        parts=Parts(
            qk_norm="proj", norms=("post_attention_layernorm", "post_feedforward_layernorm")
        ),
    ),
    ZooModel(
        "glm4",
        "GLM-4 (dense glm4): partial rotary (half of head_dim), q/k/v bias, fused gate_up, "
        "sandwich norms",
        {
            "architectures": ["Glm4ForCausalLM"],
            "model_type": "glm4",
            "head_dim": 16,
            "hidden_act": "silu",
            "partial_rotary_factor": 0.5,
            "rope_theta": 10000.0,
            "attention_bias": True,
            "tie_word_embeddings": False,
        },
        parts=Parts(
            qkv_bias=True,
            mlp="fused_gated",
            norms=(*LLAMA_NORMS, "post_self_attn_layernorm", "post_mlp_layernorm"),
        ),
    ),
    ZooModel(
        "deepseek-v2",
        "DeepSeek-V2: MLA (q_lora_rank 32, kv_lora_rank 32), deepseek yarn rope "
        "(DeepseekScalingRotaryEmbedding), 1 dense + 1 MoE layer (top-2 of 8, 1 shared "
        "expert, routed_scaling_factor 2)",
        {
            "architectures": ["DeepseekV2ForCausalLM"],
            "model_type": "deepseek_v2",
            "num_key_value_heads": 4,
            "hidden_act": "silu",
            "q_lora_rank": 32,
            "kv_lora_rank": 32,
            "qk_nope_head_dim": 16,
            "qk_rope_head_dim": 8,
            "v_head_dim": 16,
            "n_routed_experts": 8,
            "n_shared_experts": 1,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "moe_layer_freq": 1,
            "first_k_dense_replace": 1,
            "topk_method": "greedy",
            "n_group": 1,
            "topk_group": 1,
            "norm_topk_prob": False,
            "scoring_func": "softmax",
            "routed_scaling_factor": 2.0,
            "aux_loss_alpha": 0.001,
            "seq_aux": True,
            "rope_theta": 10000.0,
            "max_position_embeddings": 256,
            "rope_scaling": {
                "type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 64,
                "beta_fast": 32,
                "beta_slow": 1,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
            },
            "attention_bias": False,
            "tie_word_embeddings": False,
        },
        parts=Parts(attention="mla", mlp="deepseek_moe"),
    ),
    ZooModel(
        "gpt2",
        "GPT-2: NewGELU, LayerNorm with bias, learned positions, Conv1D weights, tied",
        {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "n_embd": 64,
            "n_layer": 2,
            "n_head": 4,
            "n_inner": None,
            "n_positions": 1024,
            "n_ctx": 1024,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "scale_attn_weights": True,
            "tie_word_embeddings": True,
        },
        layout="gpt2",
        init={"embed_std": 0.05, "final_norm_range": [20.0, 30.0]},
    ),
)

ZOO: dict[str, ZooModel] = {model.name: model for model in ZOO_MODELS}


def zoo_names() -> list[str]:
    """Every zoo model's name, in table order."""
    return [model.name for model in ZOO_MODELS]


def _model(name: str) -> ZooModel:
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"no zoo model {name!r}; the zoo has: {', '.join(ZOO)}") from None


def model_config(name: str) -> dict[str, Any]:
    """The model's ``config.json`` contents."""
    model = _model(name)
    sizes = DECODER_SIZES if model.layout == "decoder" else {}
    return {**COMMON_CONFIG, **sizes, **model.config}


def init_params(name: str) -> dict[str, Any]:
    """The model's init parameters: the embedded model's and :data:`ZOO_INIT`, with the
    entry's overrides."""
    return {**embedded.INIT, **ZOO_INIT, **_model(name).init}


def model_seed(name: str) -> int:
    """A seed per model, from its name (adding or reordering entries changes no other model)."""
    return embedded.SEED ^ int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def model_spec(name: str) -> dict[str, Any]:
    """Everything that determines the model's files."""
    model = _model(name)
    return {
        "name": name,
        "generator_version": GENERATOR_VERSION,
        "seed": model_seed(name),
        "config": model_config(name),
        "layout": model.layout,
        "parts": vars(model.parts),
        "init": init_params(name),
        "generation_config": embedded.GENERATION_CONFIG,
        "tokenizer": embedded.spec_hash(),
    }


def spec_hash(name: str) -> str:
    """Short content hash of :func:`model_spec`."""
    blob = json.dumps(model_spec(name), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_dir_name(name: str) -> str:
    """Name of the model's directory inside the cache: prefix, model name and spec hash."""
    return f"{ZOO_PREFIX}-{name}-{spec_hash(name)}"


def ensure_zoo_model(name: str, cache_dir: Path | None = None) -> Path:
    """Return the zoo model's directory, building it on first use.

    Safe under concurrent callers, like :func:`embedded.ensure_embedded_model`: each builds
    into its own temporary directory and renames it into place.
    """
    _model(name)
    cache = Path(cache_dir) if cache_dir is not None else embedded.default_cache_dir()
    final = cache / model_dir_name(name)
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = embedded.ensure_embedded_model(cache)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would otherwise be published
    try:
        build_model(name, tmp, tokenizer_dir)
        embedded._publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_model(name: str, out_dir: Path, tokenizer_dir: Path) -> None:
    """Write the model's tokenizer (copied from ``tokenizer_dir``), configs and weights."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for file_name in TOKENIZER_FILES:
        shutil.copyfile(Path(tokenizer_dir) / file_name, out / file_name)
    embedded._write_json(out / "config.json", model_config(name))
    embedded._write_json(out / "generation_config.json", embedded.GENERATION_CONFIG)
    embedded._write_json(out / "sglang_fl_spec.json", model_spec(name))
    emittable = embedded.emittable_token_ids(_load_tokenizer(out))
    embedded._save_weights(make_weights(name, emittable), out)


def _load_tokenizer(directory: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(directory / "tokenizer.json"))


def make_weights(name: str, emittable: list[int]) -> dict[str, torch.Tensor]:
    """Seeded state dict in checkpoint layout; the ``lm_head`` rows outside ``emittable`` are
    zero (untied) or the embedding rows shrink (tied)."""
    import torch

    init = init_params(name)
    gen = torch.Generator().manual_seed(model_seed(name))
    layout = weight_layout(name)
    tensors = {n: _init_tensor(gen, shape, kind, init) for n, shape, kind in layout}
    others = torch.ones(embedded.VOCAB_SIZE, dtype=torch.bool)
    others[emittable] = False
    if "lm_head.weight" in tensors:
        tensors["lm_head.weight"][others] = 0.0
    else:  # tied: the embedding is the lm_head; other tokens' rows shrink instead
        tensors[layout[0][0]][others] *= init["tied_other_scale"]
    return tensors


def _init_tensor(
    gen: torch.Generator, shape: tuple[int, ...], kind: str, init: dict[str, Any]
) -> torch.Tensor:
    """One tensor: norms uniform in their range, everything else normal with its std
    (``linear``: ``linear_gain / sqrt(fan_in)``, fan-in last; ``conv1d``: fan-in first)."""
    import torch

    if kind in ("norm", "final_norm"):
        wanted = "final_norm_range" if kind == "final_norm" else "norm_range"
        low, high = init.get(wanted, init["norm_range"])
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)
    std = {
        "embed": lambda: init["embed_std"],
        "bias": lambda: init["bias_std"],
        "lm_head": lambda: init["lm_head_std"],
        "linear": lambda: init["linear_gain"] / shape[-1] ** 0.5,
        "conv1d": lambda: init["linear_gain"] / shape[0] ** 0.5,
    }[kind]()
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std


Layout = list[tuple[str, tuple[int, ...], str]]


def weight_layout(name: str) -> Layout:
    """(name, shape, init kind) for every tensor of the checkpoint, in draw order."""
    model = _model(name)
    return _LAYOUTS[model.layout](model_config(name), model.parts)


def _decoder_layout(c: dict[str, Any], parts: Parts) -> Layout:
    hidden = c["hidden_size"]
    layout: Layout = [("model.embed_tokens.weight", (c["vocab_size"], hidden), "embed")]
    for i in range(c["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        layout += [(prefix + n + ".weight", (hidden,), "norm") for n in parts.norms]
        layout += _prefixed(prefix + "self_attn.", _ATTENTION[parts.attention](c, parts))
        layout += _prefixed(prefix + "mlp.", _mlp_layout(c, parts, i))
    layout.append(("model.norm.weight", (hidden,), "final_norm"))
    if not c["tie_word_embeddings"]:
        layout.append(("lm_head.weight", (c["vocab_size"], hidden), "lm_head"))
    return layout


def _prefixed(prefix: str, layout: Layout) -> Layout:
    return [(prefix + name, shape, kind) for name, shape, kind in layout]


def _head_dim(c: dict[str, Any]) -> int:
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def _qkv_attention(c: dict[str, Any], parts: Parts) -> Layout:
    hidden, head = c["hidden_size"], _head_dim(c)
    q_dim, kv_dim = c["num_attention_heads"] * head, c["num_key_value_heads"] * head
    layout: Layout = []
    for proj, dim in (("q_proj", q_dim), ("k_proj", kv_dim), ("v_proj", kv_dim)):
        layout.append((f"{proj}.weight", (dim, hidden), "linear"))
        if parts.qkv_bias:
            layout.append((f"{proj}.bias", (dim,), "bias"))
    layout.append(("o_proj.weight", (hidden, q_dim), "linear"))
    return layout + _qk_norm_layout(parts.qk_norm, head, q_dim, kv_dim)


def _qk_norm_layout(kind: str | None, head: int, q_dim: int, kv_dim: int) -> Layout:
    if kind is None:
        return []
    q, k = (head, head) if kind == "head" else (q_dim, kv_dim)
    return [("q_norm.weight", (q,), "norm"), ("k_norm.weight", (k,), "norm")]


def _fused_qkv_attention(c: dict[str, Any], parts: Parts) -> Layout:
    hidden, head = c["hidden_size"], _head_dim(c)
    q_dim, kv_dim = c["num_attention_heads"] * head, c["num_key_value_heads"] * head
    return [
        ("qkv_proj.weight", (q_dim + 2 * kv_dim, hidden), "linear"),
        ("o_proj.weight", (hidden, q_dim), "linear"),
    ]


def _mla_attention(c: dict[str, Any], parts: Parts) -> Layout:
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    qk_dim = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    kv_rank = c["kv_lora_rank"]
    if c["q_lora_rank"]:
        q_rank = c["q_lora_rank"]
        layout: Layout = [
            ("q_a_proj.weight", (q_rank, hidden), "linear"),
            ("q_a_layernorm.weight", (q_rank,), "norm"),
            ("q_b_proj.weight", (heads * qk_dim, q_rank), "linear"),
        ]
    else:
        layout = [("q_proj.weight", (heads * qk_dim, hidden), "linear")]
    kv_dim = heads * (c["qk_nope_head_dim"] + c["v_head_dim"])
    return [
        *layout,
        ("kv_a_proj_with_mqa.weight", (kv_rank + c["qk_rope_head_dim"], hidden), "linear"),
        ("kv_a_layernorm.weight", (kv_rank,), "norm"),
        ("kv_b_proj.weight", (kv_dim, kv_rank), "linear"),
        ("o_proj.weight", (hidden, heads * c["v_head_dim"]), "linear"),
    ]


_ATTENTION: dict[str, Callable[[dict[str, Any], Parts], Layout]] = {
    "qkv": _qkv_attention,
    "fused_qkv": _fused_qkv_attention,
    "mla": _mla_attention,
}


def _gated_mlp(hidden: int, inter: int, fused: bool = False) -> Layout:
    if fused:
        up: Layout = [("gate_up_proj.weight", (2 * inter, hidden), "linear")]
    else:
        up = [("gate_proj.weight", (inter, hidden), "linear"),
              ("up_proj.weight", (inter, hidden), "linear")]  # fmt: skip
    return [*up, ("down_proj.weight", (hidden, inter), "linear")]


def _experts(c: dict[str, Any], count: int) -> Layout:
    inter = c["moe_intermediate_size"]
    layout: Layout = [("gate.weight", (count, c["hidden_size"]), "linear")]
    for e in range(count):
        layout += _prefixed(f"experts.{e}.", _gated_mlp(c["hidden_size"], inter))
    return layout


def _mlp_layout(c: dict[str, Any], parts: Parts, layer: int) -> Layout:
    hidden = c["hidden_size"]
    if parts.mlp in ("gated", "fused_gated"):
        return _gated_mlp(hidden, c["intermediate_size"], fused=parts.mlp == "fused_gated")
    if parts.mlp == "moe":
        return _experts(c, c["num_experts"])
    if layer < c["first_k_dense_replace"]:  # deepseek_moe
        return _gated_mlp(hidden, c["intermediate_size"])
    shared = c["moe_intermediate_size"] * c["n_shared_experts"]
    return _experts(c, c["n_routed_experts"]) + _prefixed(
        "shared_experts.", _gated_mlp(hidden, shared)
    )


def _gpt2_layout(c: dict[str, Any], parts: Parts) -> Layout:
    """GPT-2 as released: ``transformer.*`` names, Conv1D weights stored ``[in, out]``, tied."""
    hidden = c["n_embd"]
    inner = c["n_inner"] or 4 * hidden
    layout: Layout = [
        ("transformer.wte.weight", (c["vocab_size"], hidden), "embed"),
        ("transformer.wpe.weight", (c["n_positions"], hidden), "embed"),
    ]
    for i in range(c["n_layer"]):
        p = f"transformer.h.{i}."
        layout += [
            (p + "ln_1.weight", (hidden,), "norm"),
            (p + "ln_1.bias", (hidden,), "bias"),
            (p + "attn.c_attn.weight", (hidden, 3 * hidden), "conv1d"),
            (p + "attn.c_attn.bias", (3 * hidden,), "bias"),
            (p + "attn.c_proj.weight", (hidden, hidden), "conv1d"),
            (p + "attn.c_proj.bias", (hidden,), "bias"),
            (p + "ln_2.weight", (hidden,), "norm"),
            (p + "ln_2.bias", (hidden,), "bias"),
            (p + "mlp.c_fc.weight", (hidden, inner), "conv1d"),
            (p + "mlp.c_fc.bias", (inner,), "bias"),
            (p + "mlp.c_proj.weight", (inner, hidden), "conv1d"),
            (p + "mlp.c_proj.bias", (hidden,), "bias"),
        ]
    return [
        *layout,
        ("transformer.ln_f.weight", (hidden,), "final_norm"),
        ("transformer.ln_f.bias", (hidden,), "bias"),
    ]


_LAYOUTS: dict[str, Callable[[dict[str, Any], Parts], Layout]] = {
    "decoder": _decoder_layout,
    "gpt2": _gpt2_layout,
}


def prompt_ids() -> list[list[int]]:
    """:data:`PROMPTS` as token ids (every zoo model shares the embedded model's tokenizer)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded.ensure_embedded_model())
    return [tokenizer.encode(text) for text in PROMPTS]


def hf_greedy(
    model_dir: Path,
    prompts: list[list[int]],
    max_new: int,
    attn_implementation: str | None = "eager",
    **config: object,
) -> list[list[int]]:
    """The reference for zoo comparisons: greedy continuation with HF transformers in fp32 on
    the CPU, one full forward per step (no KV cache).

    ``attn_implementation``: HF's attention kernel (``eager``, the default, is the reference
    math: its SDPA path skips e.g. Gemma 2's attention softcapping); None: HF's default.
    ``config``: changes to the model's config (e.g. ``sliding_window=None``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    kwargs.update(config)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs).eval()
    results = []
    with torch.no_grad():
        for prompt in prompts:
            ids = list(prompt)
            for _ in range(max_new):
                logits = hf(torch.tensor([ids])).logits[0, -1]
                ids.append(int(logits.argmax()))
            results.append(ids[len(prompt) :])
    return results
