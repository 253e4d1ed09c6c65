"""Table 5 (appendix D): MusicGen-small (delay pattern) on the RVQ, PVQ and PVQ-with-dropout codecs of grid
mmd_codec_quantizers (no MMD), each scheduled once its codec XP has finished (see mmd_musicgen).
"""
from ._chain import launch_lms_when_codecs_finish
from ._explorers import MMDLMExplorer
from ._paper import QUANTIZER_LMS, codec_overrides, lm_launcher


@MMDLMExplorer
def explorer(launcher):
    lm_launcher(launcher)
    launch_lms_when_codecs_finish(
        launcher, {name: (codec_overrides(codec), lm) for name, (codec, lm) in QUANTIZER_LMS.items()})
