"""Table 2: MusicGen-small (delay pattern) on the baseline codec, the MMD-parallel codec and the MMD-delay
codec (MusicGen-MMD, also Table 1), plus the flatten (unroll) LM on the baseline codec.

Each LM reads its codec through `compression_model_checkpoint=//sig/SIG`, SIG computed from the codec grids'
own definitions (_paper.CODECS). An LM is scheduled only once its codec XP has finished; until then the
table lists it with codec status "waiting": run `dora grid mmd_codec_decoding` first, this grid again later.
"""
from ._explorers import MMDLMExplorer
from ._paper import DECODING_LMS, launch_lms


@MMDLMExplorer
def explorer(launcher):
    launch_lms(launcher, DECODING_LMS)
