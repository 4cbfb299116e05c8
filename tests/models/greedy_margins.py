"""The greedy decode the model tests measure margins with (embedded model and zoo)."""

from __future__ import annotations

from typing import Any


def greedy_with_margins(model: Any, ids: Any, steps: int) -> tuple[list[int], list[float], Any]:
    """Greedy tokens, top-1/top-2 margins and stacked step logits (a full forward per step)."""
    import torch

    tokens, margins, logits = [], [], []
    with torch.no_grad():
        for _ in range(steps):
            step = model(ids).logits[0, -1]
            top = step.topk(2).values
            margins.append(float(top[0] - top[1]))
            logits.append(step)
            nxt = step.argmax().view(1, 1)
            tokens.append(int(nxt))
            ids = torch.cat([ids, nxt], dim=1)
    return tokens, margins, torch.stack(logits)
