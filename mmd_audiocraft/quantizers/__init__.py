"""Quantizers selectable from config (`quantizer: pvq`), registered into audiocraft's model builder."""


def install_quantizers() -> None:
    """Placeholder until the PVQ quantizers land: nothing to register yet."""
