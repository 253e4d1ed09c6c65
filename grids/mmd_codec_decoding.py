"""Table 2, codec side: no MMD, MMD on frame-aligned (parallel) codes, MMD on delayed codes.

The LMs of Table 2 train on these three codecs: grid mmd_musicgen, launched once they have finished.
"""
from ._explorers import MMDCompressionExplorer
from ._paper import CODECS, codec_launcher

DECODING_CODECS = ("baseline", "mmd_parallel", "mmd_delay")


@MMDCompressionExplorer
def explorer(launcher):
    codec_launcher(launcher)
    with launcher.job_array():
        for name in DECODING_CODECS:
            launcher(CODECS[name])
