"""The seeds of the diffusion noise: one per ``(seed, step, rank)``, so that a resumed run draws the same noise.

Owns :func:`step_seed` and its two streams: training noise (stream 0, one seed per step and rank)
and the fixed validation noise (stream 1, step 0), kept apart so that validating never shifts the
training noise.
"""

from __future__ import annotations

import numpy as np

TRAIN_STREAM, VAL_STREAM = 0, 1


def step_seed(seed: int, step: int, rank: int, *, stream: int = TRAIN_STREAM) -> int:
    """Seed of the diffusion noise of ``step`` on ``rank`` (a 63-bit integer from a SeedSequence).

    ``stream`` separates training noise (0) from the fixed validation noise (1, step 0).
    """
    high, low = np.random.SeedSequence([seed, stream, step, rank]).generate_state(2)
    return (int(high) << 31) ^ int(low)
