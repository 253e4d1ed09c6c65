"""Table 2, codec side: no MMD, MMD on frame-aligned (parallel) codes, MMD on delayed codes.

The LMs of Table 2 train on these three codecs: grid mmd_musicgen, launched once they have finished.
"""
from ._explorers import MMDCompressionExplorer
from ._paper import launch_codecs

DECODING_CODECS = ("baseline", "mmd_parallel", "mmd_delay")


@MMDCompressionExplorer
def explorer(launcher):
    launch_codecs(launcher, DECODING_CODECS)
