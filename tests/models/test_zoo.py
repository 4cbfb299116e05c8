"""Tests for the model zoo (sglang_fl.models.zoo): every model builds, byte-stably, loads in HF
transformers with every tensor used, and decodes greedily far from ties (no SGLang needed)."""

from __future__ import annotations

import multiprocessing as mp
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from greedy_margins import greedy_with_margins

from sglang_fl.models import embedded, zoo
from sglang_fl.models.zoo import ensure_zoo_model, zoo_names

# Smallest top-1/top-2 gap allowed, as a multiple of the model's own fp32 error (the largest
# logit difference from an fp64 copy on the same tokens): a second correct fp32 implementation
# (SGLang) makes errors of that order, so it cannot flip a greedy choice with this headroom.
MARGIN_OVER_FP32_ERROR = 100
# Measured minima over zoo.PROMPTS are 0.006 (qwen3-moe) and up; fp32 errors about 3e-5.
MIN_MARGIN = 0.004
# HF's reference math: its SDPA attention skips Gemma 2's attention softcapping.
REFERENCE = {"attn_implementation": "eager"}
# Every architecture issue 18 names, by its HF class.
ARCHITECTURES = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM",
    "Olmo2ForCausalLM", "Glm4ForCausalLM", "DeepseekV2ForCausalLM", "GPT2LMHeadModel",
}  # fmt: skip


def _hide_broken_torchvision() -> None:
    """A CUDA torchvision next to a CPU torch fails on import, and transformers' modeling
    imports pull it in when installed; these tests need none (see test_embedded.py)."""
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:
        sys.modules["torchvision"] = None  # type: ignore[assignment]


_hide_broken_torchvision()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(scope="module")
def zoo_dirs(cache: Path) -> dict[str, Path]:
    return {name: ensure_zoo_model(name, cache) for name in zoo_names()}


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_import_pulls_in_no_heavy_modules() -> None:
    code = (
        "import sys, sglang_fl.models.zoo\n"
        "heavy = {'torch', 'transformers', 'tokenizers', 'safetensors'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_zoo_covers_every_named_architecture() -> None:
    archs = [zoo.model_config(name)["architectures"][0] for name in zoo_names()]
    assert set(archs) == ARCHITECTURES
    assert len(archs) == len(set(archs))


def test_unknown_name_lists_the_zoo(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no zoo model 'llama2'; the zoo has: llama3, mistral"):
        ensure_zoo_model("llama2", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_spec_hash_follows_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = {name: zoo.spec_hash(name) for name in zoo_names()}
    assert len(set(hashes.values())) == len(hashes)
    assert zoo.model_dir_name("gpt2") == f"sglang-fl-zoo-gpt2-{hashes['gpt2']}"
    monkeypatch.setitem(zoo.ZOO["qwen3"].config, "rope_theta", 20000.0)
    assert zoo.spec_hash("qwen3") != hashes["qwen3"]
    assert zoo.spec_hash("llama3") == hashes["llama3"]
    monkeypatch.undo()
    monkeypatch.setattr(zoo, "GENERATOR_VERSION", zoo.GENERATOR_VERSION + 1)
    assert zoo.spec_hash("qwen3") != hashes["qwen3"]
    monkeypatch.undo()
    monkeypatch.setattr(embedded, "SEED", embedded.SEED + 1)  # the seeds derive from it
    assert zoo.spec_hash("qwen3") != hashes["qwen3"]


def test_models_share_the_embedded_tokenizer(zoo_dirs: dict[str, Path], cache: Path) -> None:
    tokenizer_dir = cache / embedded.model_dir_name()
    for directory in zoo_dirs.values():
        for name in zoo.TOKENIZER_FILES:
            assert (directory / name).read_bytes() == (tokenizer_dir / name).read_bytes()


def _build_all(root: Path, tokenizer_dir: Path) -> None:
    for name in zoo_names():
        zoo.build_model(name, root / name, tokenizer_dir)


def test_two_builds_are_byte_identical(
    zoo_dirs: dict[str, Path], cache: Path, tmp_path: Path
) -> None:
    """A fresh process and this one build every model; the files equal each other and the
    cached copies (dtype, layout order and seeds leave nothing to chance)."""
    tokenizer_dir = cache / embedded.model_dir_name()
    child = mp.get_context("spawn").Process(target=_build_all, args=(tmp_path / "b", tokenizer_dir))
    child.start()
    _build_all(tmp_path / "a", tokenizer_dir)
    child.join(120)
    assert child.exitcode == 0
    for name, directory in zoo_dirs.items():
        first, second = _files(tmp_path / "a" / name), _files(tmp_path / "b" / name)
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(first), name
        assert first == second, name
        assert first == _files(directory), name


def test_existing_dir_is_reused(zoo_dirs: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setattr(zoo, "build_model", _fail_build)
    assert ensure_zoo_model("olmo2", zoo_dirs["olmo2"].parent) == zoo_dirs["olmo2"]


def _fail_build(name: str, out_dir: Path, tokenizer_dir: Path) -> None:
    (Path(out_dir) / "partial").write_text("x")
    raise RuntimeError("build failed")


def test_failed_build_leaves_only_the_tokenizer_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(zoo, "build_model", _fail_build)
    with pytest.raises(RuntimeError, match="build failed"):
        ensure_zoo_model("gpt2", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [embedded.model_dir_name()]


def test_untied_lm_head_rows_of_other_tokens_are_zero(zoo_dirs: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    tokens = zoo._load_tokenizer(zoo_dirs["qwen3"])
    others = sorted(set(range(embedded.VOCAB_SIZE)) - set(embedded.emittable_token_ids(tokens)))
    assert embedded.ENDOFTEXT_ID in others
    for name, directory in zoo_dirs.items():
        tensors = load_file(directory / "model.safetensors")
        head = tensors.get("lm_head.weight")
        if zoo.model_config(name)["tie_word_embeddings"]:
            assert head is None, name
            embed = tensors[zoo.weight_layout(name)[0][0]]
            ratio = embed[others].norm(dim=1).mean() / embed.norm(dim=1).mean()
            assert 0.05 < float(ratio) < 0.2, name
        else:
            assert head is not None and not head[others].any(), name


@pytest.fixture(scope="module", params=zoo_names())
def loaded(request: pytest.FixtureRequest, zoo_dirs: dict[str, Path]) -> tuple[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    name = request.param
    model, info = AutoModelForCausalLM.from_pretrained(
        zoo_dirs[name], dtype=torch.float32, output_loading_info=True, **REFERENCE
    )
    assert not any(info.values()), (name, info)
    return name, model.eval()


def test_loads_in_transformers_as_its_architecture(loaded: tuple[str, Any]) -> None:
    name, model = loaded
    config = zoo.model_config(name)
    assert type(model).__name__ == config["architectures"][0]
    assert model.config.model_type == config["model_type"]
    assert model.config.vocab_size == embedded.VOCAB_SIZE
    assert sum(p.numel() for p in model.parameters()) < 500_000  # tiny: seconds on a CPU


@pytest.mark.slow
def test_greedy_margins_and_variety(loaded: tuple[str, Any], zoo_dirs: dict[str, Path]) -> None:
    """Greedy decoding of zoo.PROMPTS is far from ties (measured against the model's own
    fp32 error, from an fp64 copy), varied, and printable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, model = loaded
    fp64 = AutoModelForCausalLM.from_pretrained(
        zoo_dirs[name], dtype=torch.float64, experts_implementation="eager", **REFERENCE
    ).eval()  # HF's grouped-mm experts have no fp64 kernel
    tokenizer = AutoTokenizer.from_pretrained(zoo_dirs[name])
    emittable = set(embedded.emittable_token_ids(zoo._load_tokenizer(zoo_dirs[name])))
    continuations, margins, error = [], [], 0.0
    for prompt in zoo.PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        tokens, step_margins, logits = greedy_with_margins(model, ids, zoo.GREEDY_STEPS)
        with torch.no_grad():
            full = torch.cat([ids, torch.tensor([tokens[:-1]])], dim=1)
            ref = fp64(full).logits[0, ids.shape[1] - 1 :]
        error = max(error, float((ref - logits.double()).abs().max()))
        continuations.append(tokens)
        margins += step_margins
    assert min(margins) > max(MIN_MARGIN, MARGIN_OVER_FP32_ERROR * error), (name, error)
    for tokens in continuations:
        assert len(set(tokens)) >= 4, (name, tokens)
        assert set(tokens) <= emittable, (name, tokens)
    assert len({tuple(t) for t in continuations}) == len(zoo.PROMPTS), name


def test_sliding_windows_are_shorter_than_the_long_prompt(zoo_dirs: dict[str, Path]) -> None:
    """The windowed models' windows must bite within the comparison: the long prompt alone
    is longer than every window."""
    tokens = zoo._load_tokenizer(zoo_dirs["mistral"])
    longest = max(len(tokens.encode(p).ids) for p in zoo.PROMPTS)
    windows = [c["sliding_window"] for c in map(zoo.model_config, zoo_names())
               if c.get("sliding_window")]  # fmt: skip
    assert len(windows) == 3  # mistral, gemma2, gemma3
    assert longest > max(windows)


def test_weight_layout_names_are_unique_and_cover_every_layer() -> None:
    for name in zoo_names():
        layout = zoo.weight_layout(name)
        names = [n for n, _, _ in layout]
        assert len(names) == len(set(names)), name
        layers = {int(m[1]) for n in names if (m := re.search(r"\.(?:layers|h)\.(\d+)\.", n))}
        config = zoo.model_config(name)
        assert layers == set(range(config.get("num_hidden_layers") or config["n_layer"])), name
