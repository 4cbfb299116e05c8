"""Tests for the locally generated tiny Qwen2 model (sglang_fl.models.embedded)."""

from __future__ import annotations

import multiprocessing as mp
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from greedy_margins import greedy_with_margins

from sglang_fl.models import embedded
from sglang_fl.models.embedded import EMBEDDED_MODEL_NAME, ensure_embedded_model


def _hide_broken_torchvision() -> None:
    """Make transformers treat an unimportable torchvision as absent.

    A CUDA torchvision next to a CPU-only torch fails on import
    (``operator torchvision::nms does not exist``), and transformers' Qwen2
    modeling import pulls it in whenever it is installed.  These tests need no
    torchvision, so a broken one is hidden (``find_spec`` then returns None).
    """
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:
        sys.modules["torchvision"] = None  # type: ignore[assignment]


_hide_broken_torchvision()

PROMPTS = ("The capital of France is", "def fibonacci(n):", "Once upon a time")
GREEDY_STEPS = 16
# Smallest top-1/top-2 logit gap allowed on PROMPTS (measured: 0.28).  fp32
# logits of this model are off by ~3e-5 from fp64 (logits have std ~16), and
# test_greedy_margins_and_variety checks that MIN_MARGIN clears that 100x, so a
# second correct fp32 implementation (SGLang) cannot flip a greedy choice here.
MIN_MARGIN = 0.05


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_embedded_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def hf_model(model_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, output_loading_info=True
    )
    assert not any(info.values()), info
    return model.eval()


@pytest.fixture(scope="module")
def hf_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_import_pulls_in_no_heavy_modules() -> None:
    code = (
        "import sys, sglang_fl.models.embedded\n"
        "heavy = {'torch', 'transformers', 'tokenizers', 'safetensors'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.default_cache_dir() == tmp_path / "xdg" / "sglang_fl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert embedded.default_cache_dir() == tmp_path / "home" / ".cache" / "sglang_fl"


def test_dir_name_carries_spec_hash(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert re.fullmatch(rf"{re.escape(EMBEDDED_MODEL_NAME)}-[0-9a-f]{{12}}", model_dir.name)
    assert model_dir.name == embedded.model_dir_name()
    base = embedded.spec_hash()
    assert embedded.spec_hash() == base
    monkeypatch.setattr(embedded, "SEED", embedded.SEED + 1)
    assert embedded.spec_hash() != base
    monkeypatch.undo()
    monkeypatch.setitem(embedded.MODEL_CONFIG, "hidden_size", 128)
    assert embedded.spec_hash() != base
    monkeypatch.undo()
    monkeypatch.setattr(embedded, "GENERATOR_VERSION", embedded.GENERATOR_VERSION + 1)
    assert embedded.spec_hash() != base


def test_two_builds_are_byte_identical(model_dir: Path, tmp_path: Path) -> None:
    child = mp.get_context("spawn").Process(target=embedded.build_model, args=(tmp_path / "b",))
    child.start()
    embedded.build_model(tmp_path / "a")
    child.join(60)
    assert child.exitcode == 0
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(first)
    assert first == second
    assert first == _files(model_dir)


def test_concurrent_ensure_publishes_one_complete_dir(tmp_path: Path, model_dir: Path) -> None:
    """Two fresh processes (each building, neither finding a model) race to publish."""
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=ensure_embedded_model, args=(tmp_path,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    assert [p.name for p in tmp_path.iterdir()] == [embedded.model_dir_name()]
    assert _files(tmp_path / embedded.model_dir_name()) == _files(model_dir)


def _raw_tokenizer(directory: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(directory / "tokenizer.json"))


def test_existing_dir_is_reused(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "build_model", _fail_build)
    assert ensure_embedded_model(model_dir.parent) == model_dir


def _fail_build(out_dir: Path) -> None:
    (Path(out_dir) / "partial").write_text("x")
    raise RuntimeError("build failed")


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "build_model", _fail_build)
    with pytest.raises(RuntimeError, match="build failed"):
        ensure_embedded_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_losing_the_rename_race_uses_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / embedded.model_dir_name()

    def build_while_other_wins(out_dir: Path) -> None:
        final.mkdir()
        (final / "winner").write_text("w")
        (Path(out_dir) / "loser").write_text("l")

    monkeypatch.setattr(embedded, "build_model", build_while_other_wins)
    assert ensure_embedded_model(tmp_path) == final
    assert [p.name for p in tmp_path.iterdir()] == [final.name]
    assert [p.name for p in final.iterdir()] == ["winner"]


def test_config_is_tiny_gqa_qwen2(model_dir: Path) -> None:
    from transformers import AutoConfig, GenerationConfig, Qwen2Config

    config = AutoConfig.from_pretrained(model_dir)
    assert isinstance(config, Qwen2Config)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (1024, 64, 2)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.tie_word_embeddings is False
    assert config.eos_token_id == config.pad_token_id == embedded.ENDOFTEXT_ID
    generation = GenerationConfig.from_pretrained(model_dir)
    assert embedded.ENDOFTEXT_ID in generation.eos_token_id
    assert generation.do_sample is False


def test_weights_match_transformers_layout(hf_model: Any) -> None:
    from transformers import Qwen2ForCausalLM

    fresh = Qwen2ForCausalLM(hf_model.config)
    assert set(fresh.state_dict()) == {name for name, _, _ in embedded._weight_layout()}


def test_tokenizer_matches_raw_tokenizer_json(model_dir: Path, hf_tokenizer: Any) -> None:
    """AutoTokenizer (a rebuilt Qwen2Tokenizer in transformers 5) encodes like tokenizer.json."""
    from transformers import PreTrainedTokenizerFast

    raw = _raw_tokenizer(model_dir)
    text = "Hello   world!! 12345 don't\n\n  <|im_start|>user\nhi<|im_end|> caf\u00e9 \u00fcber"
    expected = raw.encode(text).ids
    assert hf_tokenizer(text).input_ids == expected
    assert PreTrainedTokenizerFast.from_pretrained(model_dir)(text).input_ids == expected
    assert hf_tokenizer.decode(hf_tokenizer(text).input_ids) == text
    assert len(hf_tokenizer) == embedded.VOCAB_SIZE
    assert hf_tokenizer.eos_token == "<|endoftext|>"
    assert hf_tokenizer.eos_token_id == hf_tokenizer.pad_token_id == embedded.ENDOFTEXT_ID
    assert hf_tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [
        embedded.IM_START_ID,
        embedded.IM_END_ID,
    ]


def test_chat_template_renders(hf_tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ]
    text = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = hf_tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[0] == embedded.IM_START_ID
    assert ids.count(embedded.IM_END_ID) == 2


def test_greedy_margins_and_variety(hf_model: Any, hf_tokenizer: Any) -> None:
    """Greedy decoding is far from ties, so fp32 HF and SGLang agree token by token.

    The fp32 error bound is measured here, against an fp64 copy of the model on
    the same token sequence; MIN_MARGIN must clear it by 100x.
    """
    import copy

    import torch

    fp64 = copy.deepcopy(hf_model).double()
    continuations, all_margins, worst_error = [], [], 0.0
    for prompt in PROMPTS:
        ids = hf_tokenizer(prompt, return_tensors="pt").input_ids
        tokens, margins, logits = greedy_with_margins(hf_model, ids, GREEDY_STEPS)
        with torch.no_grad():
            full = torch.cat([ids, torch.tensor([tokens[:-1]])], dim=1)
            ref = fp64(full).logits[0, ids.shape[1] - 1 :]
        worst_error = max(worst_error, float((ref - logits.double()).abs().max()))
        continuations.append(tokens)
        all_margins += margins
    assert min(all_margins) > MIN_MARGIN
    assert worst_error < MIN_MARGIN / 100
    for tokens in continuations:
        assert len(set(tokens)) >= GREEDY_STEPS // 2
        assert max(tokens) < embedded.BPE_VOCAB_SIZE
    assert len({tuple(t) for t in continuations}) == len(PROMPTS)
