"""An existing codec fine-tuned with the fine-tune recipe (solver=compression/encodec_mmd_finetune_32khz: the
paper's codec setup, the recipe's loss setting and fine-tune budget; examples/finetune_existing_codec.md), without
(the control: the same continuation) and with the MMD loss.

Source: MusicGen's released EnCodec by default; set MMD_FINETUNE_FROM (a `//pretrained/NAME`, `//sig/SIG` or a
checkpoint path) before `dora grid` to start from another (it is part of the signatures). `continue_from`
takes the model weights only: optimizer and adversaries start fresh.
"""
from ._explorers import MMDCompressionExplorer
from ._paper import FINETUNE_MMD, NO_MMD, finetune_launcher


@MMDCompressionExplorer
def explorer(launcher):
    finetune_launcher(launcher)
    with launcher.job_array():
        launcher(NO_MMD)
        launcher(FINETUNE_MMD)
