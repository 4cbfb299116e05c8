"""``sglang-fl bench e2e``'s summary: best and median ratios to the no-plugin run, failures."""

from __future__ import annotations

from sglang_fl.bench.e2e import summary_rows


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
