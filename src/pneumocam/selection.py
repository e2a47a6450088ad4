"""Which images of a split get drawn: the overlay choice and the confusion-matrix cells.

Both are deterministic, ties broken by patientId.

:func:`select_examples` picks the single-image overlays: up to three quarters of ``n`` are
positives in decreasing probability (the maps the model is surest of, where a wrong place is most
telling), the rest negatives in decreasing probability (its most confident false alarms: what it
looks at when it is wrong); a class that runs short leaves its places to the other.

:func:`confusion_cells` picks the ``k`` most confident images of each confusion-matrix cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The confusion-matrix cells, in the order the grids are drawn.
GRID_CELLS = ("tp", "fp", "fn", "tn")
#: Each cell's name in a grid's title.
CELL_NAMES = {"tp": "true positives", "fp": "false positives", "fn": "false negatives",
              "tn": "true negatives"}


def _order(probs: np.ndarray, ids: Sequence[str], idx: np.ndarray, descending: bool) -> np.ndarray:
    """``idx`` sorted by probability (then patientId), deterministic."""
    keys = sorted(idx.tolist(), key=lambda i: ((-1 if descending else 1) * float(probs[i]), ids[i]))
    return np.asarray(keys, dtype=np.int64)


def select_examples(labels: np.ndarray, probs: np.ndarray, ids: Sequence[str], n: int) -> np.ndarray:
    """Indices of the ``n`` images to draw: positives then negatives (see the module docstring).

    Args:
        labels: (N,) 0/1. probs: (N,) in [0, 1]. ids: N patient ids (tie-breaker).

    Returns:
        int64 indices, positives (decreasing probability) first, then negatives.
    """
    labels = np.asarray(labels)
    pos = _order(probs, ids, np.flatnonzero(labels == 1), True)
    neg = _order(probs, ids, np.flatnonzero(labels != 1), True)
    n = max(0, int(n))
    n_pos = min(len(pos), n - n // 4)
    n_neg = min(len(neg), n - n_pos)
    n_pos = min(len(pos), n - n_neg)  # negatives ran short: give their places back
    return np.concatenate([pos[:n_pos], neg[:n_neg]]).astype(np.int64)


def confusion_cells(labels: np.ndarray, probs: np.ndarray, ids: Sequence[str], threshold: float,
                    k: int) -> dict[str, np.ndarray]:
    """The ``k`` most confident examples of each confusion-matrix cell at ``threshold``.

    Returns:
        ``{"tp", "fp": decreasing probability; "fn", "tn": increasing probability}`` -> indices.
    """
    labels = np.asarray(labels)
    pred = np.asarray(probs) >= threshold
    cells = {
        "tp": (np.flatnonzero((labels == 1) & pred), True),
        "fp": (np.flatnonzero((labels != 1) & pred), True),
        "fn": (np.flatnonzero((labels == 1) & ~pred), False),
        "tn": (np.flatnonzero((labels != 1) & ~pred), False),
    }
    return {name: _order(probs, ids, idx, desc)[:max(0, int(k))] for name, (idx, desc) in cells.items()}
