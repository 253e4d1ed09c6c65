"""Figure 2: the paper's 32 kHz EnCodec trained with MMD weights 0, 10, 100, 1e3 and 1e4.

Read the MMD, total correlation and MSSpec columns of `dora grid mmd_codec_weights`: the paper finds both
independence measures decreasing up to 1e3 with unchanged reconstruction, and 1e4 perturbing training.
"""
from ._explorers import MMDCompressionExplorer
from ._paper import codec_launcher

WEIGHTS = (0.0, 10.0, 100.0, 1000.0, 10000.0)


@MMDCompressionExplorer
def explorer(launcher):
    codec_launcher(launcher)
    with launcher.job_array():
        for weight in WEIGHTS:
            launcher({"losses.inde": weight})
