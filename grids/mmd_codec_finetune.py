"""An existing codec fine-tuned on the paper's codec setup, without and with the MMD loss.

Source: MusicGen's released EnCodec by default; set MMD_FINETUNE_FROM (a `//pretrained/NAME`, `//sig/SIG` or a
checkpoint path) before `dora grid` to start from another (it is part of the signatures). `continue_from`
takes the model weights only: optimizer and adversaries start fresh.
"""
from ._explorers import MMDCompressionExplorer
from ._paper import FINETUNE_FROM, MMD, NO_MMD, codec_launcher


@MMDCompressionExplorer
def explorer(launcher):
    codec_launcher(launcher).bind_({"continue_from": FINETUNE_FROM})
    with launcher.job_array():
        launcher(NO_MMD)
        launcher(MMD)
