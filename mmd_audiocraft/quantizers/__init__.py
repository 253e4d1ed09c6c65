"""Quantizers selectable from config (`encodec.quantizer: pvq`), registered into audiocraft's model builder.

audiocraft picks quantizer classes from a dict literal inside `models.builders.get_quantizer`, which
`get_compression_model` looks up as a module global at call time: rebinding that module attribute is enough
for codec training, `//sig/` loading by the LM solvers and `model_from_checkpoint` alike.
"""
from __future__ import annotations


def _plugin_quantizer_class(name: str):
    if name == "pvq":
        from .pvq import ProductVectorQuantizer

        return ProductVectorQuantizer
    return None


def install_quantizers() -> None:
    """Idempotent: `encodec.quantizer: NAME` builds our class for NAME (`pvq`) from the config
    node `NAME:` (plus the encoder's `dimension`), and audiocraft's own quantizers otherwise."""
    from audiocraft.models import builders
    from audiocraft.utils.utils import dict_from_config

    if getattr(builders.get_quantizer, "_mmd_audiocraft", False):
        return
    stock_get_quantizer = builders.get_quantizer

    def get_quantizer(quantizer: str, cfg, dimension: int):
        klass = _plugin_quantizer_class(quantizer)
        if klass is None:
            return stock_get_quantizer(quantizer, cfg, dimension)
        node = cfg.get(quantizer) if hasattr(cfg, "get") else getattr(cfg, quantizer, None)
        if node is None:
            raise ValueError(f"encodec.quantizer={quantizer!r} but the config has no `{quantizer}:` node: select "
                             "a model config that defines it, e.g. model=encodec/encodec_pvq_nq4")
        return klass(dimension=dimension, **dict_from_config(node))

    get_quantizer._mmd_audiocraft = True
    get_quantizer.__wrapped__ = stock_get_quantizer
    builders.get_quantizer = get_quantizer
