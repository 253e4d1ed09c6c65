"""`dora grid` tables with the independence loss and metrics next to audiocraft's usual columns."""
from __future__ import annotations

import treetable as tt
from audiocraft.grids.compression._explorers import CompressionExplorer
from audiocraft.grids.musicgen._explorers import GenerationEvalExplorer, LMExplorer

from . import _profile
from ._chain import XPProgress, read_history, sig_of

N_CODEBOOKS = 4  # the paper's codecs: one mi_rest column per codebook


def independence_leaves() -> list:
    """Evaluate-stage independence metrics (mmd_audiocraft/integration/evaluation.py)."""
    return [tt.leaf("tc_pair_pct", ".3f"), tt.leaf("tc_pair_raw_pct", ".3f"), tt.leaf("inde_heldout", ".2e")] + [
        tt.leaf(f"mi_rest_q{k}_bits", ".3f") for k in range(N_CODEBOOKS)]


class SettingFolder:
    """A grid folder per setting of the environment's inputs (grids/_profile.py `setting`): the seam around
    Dora's run_grid (integration/seams.py) names the folder NAME@SETTING."""

    @staticmethod
    def setting() -> str:
        return _profile.setting()


class MMDCompressionExplorer(SettingFolder, CompressionExplorer):
    """CompressionExplorer plus the MMD value (train, valid) and the held-out independence metrics."""

    eval_metrics = ["sisnr", "visqol"]

    def get_grid_metrics(self):
        return [
            tt.group("train", [tt.leaf("epoch"), tt.leaf("bandwidth", ".2f"), tt.leaf("adv", ".4f"),
                               tt.leaf("d_loss", ".4f"), tt.leaf("msspec", ".4f"), tt.leaf("inde", ".2e"),
                               tt.leaf("inde_grad_ratio", ".2f")], align=">"),
            tt.group("valid", [tt.leaf("bandwidth", ".2f"), tt.leaf("adv", ".4f"), tt.leaf("msspec", ".4f"),
                               tt.leaf("sisnr", ".2f"), tt.leaf("inde", ".2e")], align=">"),
            tt.group("evaluate", [tt.leaf(name, ".3f") for name in self.eval_metrics] + independence_leaves(),
                     align=">"),
        ]


class MMDLMExplorer(SettingFolder, LMExplorer):
    """LMExplorer plus the codec each LM reads: its sig, whether it has finished (else the LM is waiting and
    not scheduled) and its held-out independence, so one table reads like the paper's Table 2."""

    def get_grid_metrics(self):
        codec = tt.group("codec", [tt.leaf("sig"), tt.leaf("status"), tt.leaf("tc_pair_pct", ".3f"),
                                   tt.leaf("inde_heldout", ".2e")], align=">")
        return [codec] + super().get_grid_metrics()

    def process_sheep(self, sheep, history):
        parts = super().process_sheep(sheep, history)
        sig = sig_of(sheep.xp.cfg)
        if sig is None:
            parts["codec"] = {"sig": str(sheep.xp.cfg.get("compression_model_checkpoint")), "status": "ready"}
            return parts
        progress = XPProgress.of_sig(sig)
        codec = {"sig": sig, "status": progress.status}
        evaluations = [epoch["evaluate"] for epoch in read_history(progress.folder) if "evaluate" in epoch]
        if evaluations:
            codec.update({k: v for k, v in evaluations[-1].items() if k in ("tc_pair_pct", "inde_heldout")})
        parts["codec"] = codec
        return parts


class MMDEvalExplorer(SettingFolder, GenerationEvalExplorer):
    """audiocraft's GenerationEvalExplorer (evaluate: ce, ppl, fad, kld, text_consistency, chroma_cosine) plus the
    LM each evaluation reads (`continue_from=//sig/SIG`): its sig and whether it has finished (else the evaluation
    waits, not scheduled), and the codec that LM runs on."""

    def get_grid_metrics(self):
        lm = tt.group("lm", [tt.leaf("sig"), tt.leaf("status"), tt.leaf("codec")], align=">")
        return [lm] + super().get_grid_metrics()

    def process_sheep(self, sheep, history):
        parts = super().process_sheep(sheep, history)
        sig = sig_of(sheep.xp.cfg, "continue_from")
        lm = {"sig": sig or str(sheep.xp.cfg.get("continue_from")), "codec": sig_of(sheep.xp.cfg) or "-"}
        lm["status"] = XPProgress.of_sig(sig).status if sig else "ready"
        parts["lm"] = lm
        return parts
