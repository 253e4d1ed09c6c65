"""Table 5 (appendix D): MusicGen-small (delay pattern) on the RVQ, PVQ and PVQ-with-dropout codecs of grid
mmd_codec_quantizers (no MMD), each scheduled once its codec XP has finished (see mmd_musicgen).
"""
from ._explorers import MMDLMExplorer
from ._paper import QUANTIZER_LMS, launch_lms


@MMDLMExplorer
def explorer(launcher):
    launch_lms(launcher, QUANTIZER_LMS)
