"""How well a codec reconstructs audio: audiocraft's log-mel L1 and SI-SNR, on settings fixed for every codec.

The settings are those of audiocraft's compression solver (config/solver/compression/default.yaml, `mel` and
`sisnr`), fixed here so that the numbers of codecs trained with different configs compare; audiocraft's valid
stage logs the same two metrics with each XP's own settings (`mel`, and `sisnr` as minus the SI-SNR).
"""
from __future__ import annotations

__all__ = ["MEL_SETTINGS", "SISNR_SEGMENT_SECONDS", "Reconstruction"]

MEL_SETTINGS = dict(n_fft=1024, hop_length=256, win_length=1024, n_mels=64, f_min=64, f_max=None, normalized=False,
                    floor_level=1e-5)
SISNR_SEGMENT_SECONDS = 5.0  # audiocraft's SISNR scores 5 s windows (50 % overlap) and averages them


class Reconstruction:
    """Running means of decoded audio against the audio it encodes, weighted by duration.

    `add(decoded, original)` takes [B, C, T] tensors of the same shape at `sample_rate`; audio shorter than the
    mel window (MEL_SETTINGS["win_length"] samples) is left out (audiocraft's mel pads by reflection, which needs
    more). `result()` returns {"mel_l1": audiocraft's MelSpectrogramL1Loss (L1 between log10 mel spectrograms,
    lower is better), "sisnr_db": SI-SNR in dB (minus audiocraft's SISNR loss, higher is better), "seconds": the
    audio scored}; values are None when nothing was scored.
    """

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self._losses = None  # built with the first audio long enough to score
        self._samples = 0
        self._mel_sum = 0.0
        self._sisnr_sum = 0.0

    def add(self, decoded, original) -> None:
        import torch

        if decoded.shape != original.shape:
            raise ValueError(f"Reconstruction.add: decoded {list(decoded.shape)} and original "
                             f"{list(original.shape)} differ: expected two [B, C, T] tensors of the same shape")
        if original.shape[-1] < MEL_SETTINGS["win_length"]:
            return
        if self._losses is None:
            from audiocraft.losses import SISNR, MelSpectrogramL1Loss

            self._losses = (MelSpectrogramL1Loss(self.sample_rate, **MEL_SETTINGS),
                            SISNR(self.sample_rate, segment=SISNR_SEGMENT_SECONDS))
        mel, sisnr = self._losses
        weight = original.shape[0] * original.shape[-1]
        with torch.no_grad():
            self._mel_sum += float(mel(decoded.float(), original.float())) * weight
            self._sisnr_sum += -float(sisnr(decoded.float(), original.float())) * weight
        self._samples += weight

    def result(self) -> dict:
        if not self._samples:
            return {"mel_l1": None, "sisnr_db": None, "seconds": 0.0}
        return {"mel_l1": self._mel_sum / self._samples, "sisnr_db": self._sisnr_sum / self._samples,
                "seconds": self._samples / self.sample_rate}
