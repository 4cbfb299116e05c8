"""A tiny Qwen2 causal LM, generated locally and deterministically.

Why: sglang-fl must be able to serve a *real* model through *real* SGLang on a
plain CPU machine that cannot download anything (CI, developer boxes).  This
module builds such a model from nothing: a byte-level BPE tokenizer trained on
a built-in English corpus, and a 2-layer Qwen2 network with seeded random
weights.  Its text is meaningless; what matters is that it is a genuine Qwen2
checkpoint that HF transformers and SGLang both load, and that greedy decoding
is robust enough to be compared token by token between them in fp32.

Design choices that serve that comparison:

* Weights are drawn directly (seeded ``torch.Generator``, fixed tensor order)
  instead of through ``Qwen2ForCausalLM(config)``: the result does not depend
  on the installed transformers' init code, and building does not import
  transformers at all (its Qwen2 modeling import can fail on a CPU-only torch
  that sits next to a CUDA torchvision).
* Weights are much larger than a trained model's (unit-variance embeddings,
  ``1/sqrt(fan_in)`` linears, big ``lm_head``) so the residual stream depends
  strongly on context and the top-1/top-2 logit gaps are large compared with
  fp32 kernel differences.
* ``lm_head`` rows are zero for special tokens and for tokens that are not
  printable ASCII, so greedy output never stops early (no EOS) and always
  decodes to valid text, however it is detokenized.
* The tokenizer uses exactly the pipeline of Qwen2's tokenizer (NFC, Qwen's
  split regex, byte-level BPE), so transformers 5, which rebuilds a
  ``Qwen2Tokenizer`` from vocab and merges, encodes exactly like the raw
  ``tokenizer.json``.
* All JSON files are written by hand in the format of released Qwen2
  checkpoints, so the files are byte-stable and load in transformers 4 and 5.

The model lands in ``<cache>/<EMBEDDED_MODEL_NAME>-<spec hash>``; building goes
into a temporary sibling directory that is renamed into place, so concurrent
callers never see a partial model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

EMBEDDED_MODEL_NAME = "sglang-fl-tiny-qwen2"

# Bump when the generation procedure changes in a way the spec does not show.
GENERATOR_VERSION = 1
SEED = 20240611

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

VOCAB_SIZE = 1024
BPE_VOCAB_SIZE = VOCAB_SIZE - len(SPECIAL_TOKENS)
ENDOFTEXT_ID = BPE_VOCAB_SIZE
IM_START_ID = BPE_VOCAB_SIZE + 1
IM_END_ID = BPE_VOCAB_SIZE + 2

# config.json, in the (transformers 4) format of released Qwen2 checkpoints;
# transformers 5 reads it too.
MODEL_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 2,
    "tie_word_embeddings": False,
    "use_cache": True,
    "torch_dtype": "float32",
    "bos_token_id": ENDOFTEXT_ID,
    "eos_token_id": ENDOFTEXT_ID,
    "pad_token_id": ENDOFTEXT_ID,
}

GENERATION_CONFIG: dict[str, Any] = {
    "bos_token_id": ENDOFTEXT_ID,
    "eos_token_id": [IM_END_ID, ENDOFTEXT_ID],
    "pad_token_id": ENDOFTEXT_ID,
    "do_sample": False,
}

# Seeded init: normal with the given std (linear layers: linear_gain /
# sqrt(fan_in)); norm weights uniform in norm_range, so that a loader which
# drops them changes the output.  lm_head_std 2.0 gives logits of std ~16:
# typical top-1/top-2 gaps of ~3, against fp32 errors of ~1e-5.
INIT: dict[str, Any] = {
    "embed_std": 1.0,
    "linear_gain": 1.0,
    "bias_std": 0.1,
    "norm_range": [0.5, 1.5],
    "lm_head_std": 2.0,
}

# Pre-tokenizer split of Qwen2's tokenizer (transformers' tokenization_qwen2).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = """\
The harbor town woke slowly on winter mornings. Fishing boats rocked against
the pier while gulls argued over scraps, and the baker on the corner pulled the
first loaves from a brick oven that had been warm for ninety years. Children
walked to school in pairs, counting the lamps that were still lit, and the
old ferry captain checked the weather twice before he trusted the sky.

A computer program is a careful list of instructions. Each step reads some
values, changes them, and passes the result along. When the steps are small
and well named, a reader can follow the whole journey from input to output.
When they are tangled, even the author forgets why a branch exists. Good tests
describe what the program should do, so that a change which breaks a promise is
noticed at once rather than months later by a confused user.

In the garden behind the library, volunteers planted tomatoes, beans, and
sunflowers along a crooked fence. They kept a notebook of every seed: the date
it went into the soil, how much water it received, and the day the first green
shoot appeared. By late summer the notebook was stained with mud and juice, but
it told a clear story about which rows liked the morning shade.

Mountains shape the weather around them. Moist air climbs the western slopes,
cools, and drops its rain on the forests there, while the eastern valleys stay
dry and golden. Travelers crossing the pass can feel the change within an hour:
the ferns give way to pine, the pine to grass, and the wind grows sharp and
thin. Maps mark the trails, yet only experience teaches when to turn back.

Music begins with patterns. A drummer keeps a steady pulse, a bass line walks
beneath it, and a melody wanders above, returning now and then to a familiar
phrase. Listeners remember the return more than the wandering. Composers know
this, so they repeat a theme with small surprises: a different chord, a slower
tempo, a quiet pause just before the final note.

The kitchen scale measured flour to the gram, but grandmother never used it.
She judged dough by touch, adding water until it felt like a soft earlobe, and
she timed the rising by the church bells rather than the clock. Her bread was
never exactly the same twice, and nobody ever complained. Recipes, she said,
are promises that the cook keeps in her own way.

Questions help people learn. Why does ice float? How far away is the moon? What
makes a bridge strong enough to carry trains? Each answer opens new questions,
and a curious student can follow that chain for years. Teachers who welcome
questions build classrooms where mistakes are simply steps toward understanding.

The numbers 0, 1, 2, 3, 4, 5, 6, 7, 8, and 9 appear in prices, dates, and
measurements: 12 eggs, 250 grams, 3.5 kilometers, 2024-06-11, and 7:45 in the
evening. Symbols such as +, -, *, /, =, %, #, @, and & carry meaning too, as do
brackets (like these), [square ones], and {curly ones}.
"""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sglang_fl``, or ``~/.cache/sglang_fl``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sglang_fl"


def model_spec() -> dict[str, Any]:
    """Everything that determines the generated files."""
    return {
        "name": EMBEDDED_MODEL_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
        "config": MODEL_CONFIG,
        "generation_config": GENERATION_CONFIG,
        "init": INIT,
        "special_tokens": list(SPECIAL_TOKENS),
        "chat_template": CHAT_TEMPLATE,
        "pretokenize_regex": QWEN2_PRETOKENIZE_REGEX,
        "corpus_sha256": hashlib.sha256(CORPUS.encode()).hexdigest(),
    }


def spec_hash() -> str:
    """Short content hash of :func:`model_spec`."""
    blob = json.dumps(model_spec(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_dir_name() -> str:
    """Name of the model directory inside the cache: model name + spec hash."""
    return f"{EMBEDDED_MODEL_NAME}-{spec_hash()}"


def ensure_embedded_model(cache_dir: Path | None = None) -> Path:
    """Return the generated model's directory, building it on first use.

    Safe under concurrent callers: each builds into its own temporary
    directory and renames it into place; a loser of the race discards its copy.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / model_dir_name()
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would otherwise be published
    try:
        build_model(tmp)
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Atomically move ``tmp`` to ``final`` unless another process won."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise


def build_model(out_dir: Path) -> None:
    """Write tokenizer, configs and weights to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", tokenizer_config())
    _write_json(out / "config.json", MODEL_CONFIG)
    _write_json(out / "generation_config.json", GENERATION_CONFIG)
    _write_json(out / "sglang_fl_spec.json", model_spec())
    _save_weights(make_weights(emittable_token_ids(tokenizer)), out)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def train_tokenizer() -> Tokenizer:
    """Byte-level BPE trained on :data:`CORPUS`; specials take the last ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)
    if tok.get_vocab_size() != BPE_VOCAB_SIZE:
        raise RuntimeError(
            f"corpus too small: BPE vocab {tok.get_vocab_size()} != {BPE_VOCAB_SIZE}"
        )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def tokenizer_config() -> dict[str, Any]:
    """tokenizer_config.json as released Qwen2 checkpoints write it."""
    added = {
        str(VOCAB_SIZE - len(SPECIAL_TOKENS) + i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(SPECIAL_TOKENS)
    }
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "eos_token": ENDOFTEXT,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": MODEL_CONFIG["max_position_embeddings"],
        "split_special_tokens": False,
    }


def emittable_token_ids(tok: Tokenizer) -> list[int]:
    """Ids of ordinary tokens that decode to printable ASCII (or newline)."""
    ids = []
    for i in range(BPE_VOCAB_SIZE):
        text = tok.decode([i])
        if text and all(ch == "\n" or " " <= ch <= "~" for ch in text):
            ids.append(i)
    return ids


def make_weights(emittable: list[int]) -> dict[str, torch.Tensor]:
    """Seeded Qwen2 state dict; ``lm_head`` rows outside ``emittable`` are zero."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    tensors: dict[str, torch.Tensor] = {}
    for name, shape, kind in _weight_layout():
        tensors[name] = _init_tensor(gen, shape, kind)
    mask = torch.zeros(VOCAB_SIZE, dtype=torch.bool)
    mask[emittable] = True
    tensors["lm_head.weight"][~mask] = 0.0
    return tensors


def _weight_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init kind) for every Qwen2ForCausalLM parameter, in order."""
    c = MODEL_CONFIG
    hidden, inter = c["hidden_size"], c["intermediate_size"]
    head_dim = hidden // c["num_attention_heads"]
    q_dim = c["num_attention_heads"] * head_dim
    kv_dim = c["num_key_value_heads"] * head_dim
    layout = [("model.embed_tokens.weight", (c["vocab_size"], hidden), "embed")]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        layout += [
            (p + "input_layernorm.weight", (hidden,), "norm"),
            (p + "self_attn.q_proj.weight", (q_dim, hidden), "linear"),
            (p + "self_attn.q_proj.bias", (q_dim,), "bias"),
            (p + "self_attn.k_proj.weight", (kv_dim, hidden), "linear"),
            (p + "self_attn.k_proj.bias", (kv_dim,), "bias"),
            (p + "self_attn.v_proj.weight", (kv_dim, hidden), "linear"),
            (p + "self_attn.v_proj.bias", (kv_dim,), "bias"),
            (p + "self_attn.o_proj.weight", (hidden, q_dim), "linear"),
            (p + "post_attention_layernorm.weight", (hidden,), "norm"),
            (p + "mlp.gate_proj.weight", (inter, hidden), "linear"),
            (p + "mlp.up_proj.weight", (inter, hidden), "linear"),
            (p + "mlp.down_proj.weight", (hidden, inter), "linear"),
        ]
    layout += [
        ("model.norm.weight", (hidden,), "norm"),
        ("lm_head.weight", (c["vocab_size"], hidden), "lm_head"),
    ]
    return layout


def _init_tensor(gen: torch.Generator, shape: tuple[int, ...], kind: str) -> torch.Tensor:
    import torch

    if kind == "norm":
        low, high = INIT["norm_range"]
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)
    std = {
        "embed": INIT["embed_std"],
        "bias": INIT["bias_std"],
        "lm_head": INIT["lm_head_std"],
        "linear": INIT["linear_gain"] / shape[-1] ** 0.5,
    }[kind]
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std


def _save_weights(tensors: dict[str, torch.Tensor], out: Path) -> None:
    from safetensors.torch import save_file

    path = out / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o644)  # safetensors creates it 0600; the other files are 0644
