"""``sglang-fl bench e2e``'s summary: best and median ratios to the no-plugin run, failures."""

from __future__ import annotations

import subprocess

import pytest

from sglang_fl.bench import e2e
from sglang_fl.bench.e2e import merge_rounds, summary_rows
from sglang_fl.errors import BenchmarkError


def test_ratios_are_best_to_best_and_median_to_median():
    report = {
        "spec": {"batch_sizes": [1, 64]},
        "results": [
            {"name": "base", "tok_per_s": {"1": [100.0, 80.0, 90.0], "64": [1000.0]}},
            {"name": "ours", "tok_per_s": {"1": [110.0, 99.0, 60.0], "64": [900.0]}},
            {"name": "broken", "error": "boom"},
        ],
    }
    rows = summary_rows(report)
    assert rows[0] == ["base", "100 (±20.0%) 1.000x / 1.000x", "1,000 (±0.0%) 1.000x / 1.000x"]
    assert rows[1] == ["ours", "110 (±45.5%) 1.100x / 1.100x", "900 (±0.0%) 0.900x / 0.900x"]
    assert rows[2] == ["broken", "failed", "failed"]


def test_rounds_merge_every_repeat_and_keep_each_round():
    rounds = [
        {"name": "ours", "wall_s": 50.0, "tok_per_s": {"1": [10.0, 11.0]}, "dispatch": ["a"]},
        {"name": "ours", "wall_s": 48.0, "tok_per_s": {"1": [12.0, 9.0]}, "dispatch": ["a"]},
    ]
    merged = merge_rounds(rounds)
    assert merged["tok_per_s"] == {"1": [10.0, 11.0, 12.0, 9.0]}
    assert merged["rounds"] == [{"1": [10.0, 11.0]}, {"1": [12.0, 9.0]}]
    assert merged["wall_s"] == [50.0, 48.0]
    assert merged["dispatch"] == ["a"]


def test_one_failed_round_fails_the_configuration():
    rounds = [
        {"name": "ours", "wall_s": 50.0, "tok_per_s": {"1": [10.0]}},
        {"name": "ours", "wall_s": 3.0, "error": "CUDA OOM"},
    ]
    merged = merge_rounds(rounds)
    assert merged["error"] == "CUDA OOM" and "tok_per_s" not in merged
    assert summary_rows({"spec": {"batch_sizes": [1]}, "results": [merged]}) == [["ours", "failed"]]


def test_a_configuration_past_its_timeout_is_one_line(monkeypatch, tmp_path):
    def too_slow(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(e2e.subprocess, "run", too_slow)
    spec = {"timeout": 150.0}
    with pytest.raises(BenchmarkError) as raised:
        e2e.run_configuration(e2e.CONFIGURATIONS[1], spec, tmp_path)
    assert str(raised.value) == (
        "bench e2e: configuration 'sglang-fl default' did not finish within 150 s (--timeout "
        "sets the limit per configuration)"
    )
