"""Tables 4-5, codec side: RVQ, product VQ and product VQ with hierarchical dropout, each without and with
the MMD loss (weight 1e3, delay pattern). The LMs of Table 5 run from grid mmd_musicgen_quantizers.
"""
from ._explorers import MMDCompressionExplorer
from ._paper import launch_codecs

QUANTIZER_CODECS = ("baseline", "mmd_delay", "pvq", "pvq_mmd", "pvq_dropout", "pvq_dropout_mmd")


@MMDCompressionExplorer
def explorer(launcher):
    launch_codecs(launcher, QUANTIZER_CODECS)
