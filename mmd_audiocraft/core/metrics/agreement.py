"""How far two tokenizations of the same audio agree, code by code (numpy; torch tensors accepted).

Used to say how far a fine-tuned codec moved the codes an LM was trained on (against the source codec), and how
stable a codec's codes are under re-encoding its own output (encode, decode, encode again).
"""
from __future__ import annotations

import numpy as np


def code_agreement(codes: np.ndarray, reference: np.ndarray) -> dict:
    """Fraction of identical codes between two integer code tensors [B, K, T] (same shape, same audio).

    Returns {"per_codebook": [K floats], "joint": float}: per codebook k, the fraction of the B*T positions where
    `codes[:, k] == reference[:, k]`; joint, the fraction of positions where all K codes agree (a frame the LM
    would see unchanged). Values in [0, 1]. Raises ValueError when the shapes differ or are not 3-D.
    """
    a, b = np.asarray(codes), np.asarray(reference)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"code_agreement: codes {list(a.shape)} and reference {list(b.shape)}: expected two "
                         "integer tensors of the same shape [B, K, T]")
    same = a == b
    return {"per_codebook": [float(x) for x in same.mean(axis=(0, 2))], "joint": float(same.all(axis=1).mean())}
