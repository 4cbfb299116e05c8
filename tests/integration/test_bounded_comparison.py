"""The bounded TP=1 vs TP=2 comparison of the GPU test (``test_tensor_parallel_cuda.py``), on
made-up runs: it accepts equal runs and near-ties, and rejects drift and real divergence."""

from __future__ import annotations

from integration_helpers import agreement, compare_bounded

TOP = [[[-0.1, 5], [-3.0, 6]], [[-0.4, 5], [-0.6, 7]]]  # pos 0: clear winner; pos 1: near-tie
RUN = {"output_ids": [[5, 5]], "logprobs": [[-0.1, -0.4]], "top": [TOP]}
TOLS = {"logprob_tol": 0.2, "tie_tol": 0.5}


def test_identical_runs_pass():
    assert compare_bounded(RUN, RUN, **TOLS) == []


def test_logprob_drift_is_reported():
    drifted = {**RUN, "logprobs": [[-0.1, -0.9]]}
    assert compare_bounded(RUN, drifted, **TOLS) == ["prompt 0 pos 1: logprob differs by 0.500"]


def test_divergence_at_a_near_tie_is_accepted():
    assert compare_bounded(RUN, {**RUN, "output_ids": [[5, 7]]}, **TOLS) == []


def test_divergence_at_a_clear_winner_is_reported():
    problems = compare_bounded(RUN, {**RUN, "output_ids": [[6, 5]]}, **TOLS)
    assert problems == ["prompt 0 pos 0: 5 vs 6, not a near-tie (TP=1 top-2 gap 2.900)"]


def test_agreement_reports_the_gap_over_the_common_prefix_only():
    other = {"output_ids": [[5, 7]], "logprobs": [[-0.25, -9.0]]}  # diverges at pos 1
    assert agreement(RUN, other) == "identical sequences 0/1, max logprob gap 0.1500 nats"
    assert agreement(RUN, RUN) == "identical sequences 1/1, max logprob gap 0.0000 nats"
