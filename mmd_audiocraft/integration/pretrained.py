"""Fine-tuning from Hugging Face EnCodec weights saved by current transformers.

transformers now stores weight norm as `parametrizations.weight.original0/1`; audiocraft's conversion
(CompressionSolver.load_from_pretrained) expects the older `weight_g` / `weight_v` names and fails on load.
"""
from __future__ import annotations

_RENAMES = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}


def convert_hf_weight_norm_keys(state: dict) -> dict:
    """Rename weight-norm keys in the `best_state.model` of a checkpoint-like dict, in place; returns it."""
    model_state = state.get("best_state", {}).get("model")
    if model_state is None:
        return state
    renamed = {}
    for key, value in model_state.items():
        for new_style, old_style in _RENAMES.items():
            key = key.replace(new_style, old_style)
        renamed[key] = value
    state["best_state"]["model"] = renamed
    return state
