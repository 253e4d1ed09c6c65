"""Product VQ (with hierarchical dropout) against hand-written references, and trained through our Dora main."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mmd_audiocraft.integration.capture import CodebookCapture
from mmd_audiocraft.integration.pvq import ProductVectorQuantizer, install_quantizers

from .conftest import ROOT, TINY, history, run_dora, xp_dirs

D, K, BINS, FRAME_RATE = 16, 4, 8, 50


def make_pvq(**kwargs) -> ProductVectorQuantizer:
    torch.manual_seed(0)
    # no k-means: codebooks start from audiocraft's random init, so eval-mode results are deterministic
    return ProductVectorQuantizer(dimension=D, n_q=K, bins=BINS, kmeans_init=False, **kwargs).eval()


def latent(batch=3, frames=7, seed=1) -> torch.Tensor:
    return torch.randn(batch, D, frames, generator=torch.Generator().manual_seed(seed))


def nearest_codes_reference(pvq: ProductVectorQuantizer, x: torch.Tensor) -> np.ndarray:
    """float64 numpy: for group k (channels k*D/K .. (k+1)*D/K), the index of the nearest codeword of codebook k."""
    xs = x.double().numpy()
    g = D // K
    codes = np.zeros((xs.shape[0], K, xs.shape[2]), dtype=np.int64)
    for k, layer in enumerate(pvq.layers):
        book = layer.codebook.double().numpy()                      # [bins, g]
        group = xs[:, k * g:(k + 1) * g, :].transpose(0, 2, 1)      # [B, T, g]
        dist = ((group[:, :, None, :] - book[None, None]) ** 2).sum(-1)
        codes[:, k] = dist.argmin(-1)
    return codes


def test_codes_are_the_nearest_codeword_of_each_channel_group():
    pvq, x = make_pvq(), latent()
    res = pvq(x, FRAME_RATE)
    expected = nearest_codes_reference(pvq, x)
    assert res.codes.shape == (3, K, 7) and res.x.shape == x.shape
    np.testing.assert_array_equal(res.codes.numpy(), expected)
    g = D // K
    for k, layer in enumerate(pvq.layers):  # the output of group k is codeword codes[:, k] of codebook k
        book = layer.codebook.numpy()
        np.testing.assert_allclose(res.x[:, k * g:(k + 1) * g].numpy(), book[expected[:, k]].transpose(0, 2, 1),
                                   rtol=0, atol=1e-6)


def test_bandwidth_counts_log2_bins_bits_per_codebook_and_frame():
    pvq = make_pvq()
    assert float(pvq(latent(), FRAME_RATE).bandwidth) == pytest.approx(K * 3 * 50 / 1000)  # log2(8) = 3 bits
    pvq.set_num_codebooks(2)
    assert float(pvq(latent(), FRAME_RATE).bandwidth) == pytest.approx(2 * 3 * 50 / 1000)


def test_encode_decode_round_trip():
    pvq, x = make_pvq(), latent()
    codes = pvq.encode(x)
    np.testing.assert_array_equal(codes.numpy(), pvq(x, FRAME_RATE).codes.numpy())
    decoded = pvq.decode(codes)
    torch.testing.assert_close(decoded, pvq(x, FRAME_RATE).x, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pvq.encode(decoded).numpy(), codes.numpy())  # codewords are fixed points


def test_fewer_codebooks_decode_as_zeros_after_the_prefix():
    pvq, x = make_pvq(), latent()
    full = pvq.decode(pvq.encode(x))
    pvq.set_num_codebooks(2)
    codes = pvq.encode(x)
    assert codes.shape == (3, 2, 7) and pvq.num_codebooks == 2 and pvq.total_codebooks == K
    decoded = pvq.decode(codes)
    half = 2 * D // K
    torch.testing.assert_close(decoded[:, :half], full[:, :half], rtol=0, atol=0)
    assert torch.count_nonzero(decoded[:, half:]) == 0
    with pytest.raises(ValueError, match="n=5"):
        pvq.set_num_codebooks(5)
    with pytest.raises(ValueError, match="codes"):
        pvq.decode(torch.zeros(3, K + 1, 7, dtype=torch.long))


def test_hierarchical_dropout_keeps_a_seeded_uniform_prefix_and_zeros_the_rest():
    pvq = make_pvq(hierarchical_dropout=True, threshold_ema_dead_code=0).train()
    g = D // K
    kept = []
    for seed in range(40):
        torch.manual_seed(seed)
        expected_k = int(torch.randint(1, K + 1, (1,)))  # same draw as audiocraft's RVQ q_dropout
        torch.manual_seed(seed)
        x = latent(seed=seed).requires_grad_(True)
        res = pvq(x, FRAME_RATE)
        k = res.codes.shape[1]
        assert k == expected_k
        assert torch.count_nonzero(res.x[:, k * g:]) == 0 and torch.count_nonzero(res.x[:, :k * g]) > 0
        assert float(res.bandwidth) == pytest.approx(k * 3 * 50 / 1000)
        res.x.sum().backward()  # straight-through on the kept groups, no gradient through the zeros
        torch.testing.assert_close(x.grad[:, :k * g], torch.ones_like(x.grad[:, :k * g]))
        assert torch.count_nonzero(x.grad[:, k * g:]) == 0
        kept.append(k)
    assert set(kept) == set(range(1, K + 1))
    pvq.eval()
    for seed in range(5):
        torch.manual_seed(seed)
        assert pvq(latent(seed=seed), FRAME_RATE).codes.shape[1] == K


def test_capture_hooks_see_each_codebook_vector_of_dimension_d_over_k():
    pvq, x = make_pvq(), latent()
    capture = CodebookCapture(pvq)
    with capture.recording() as passes:
        res = pvq(x, FRAME_RATE)
    (qpass,) = passes
    assert len(qpass.vectors) == K and all(v.shape == (3, D // K, 7) for v in qpass.vectors)
    assert qpass.stacked().shape == (3, K, 7, D // K)
    torch.testing.assert_close(torch.cat(qpass.vectors, dim=1), res.x, rtol=0, atol=0)
    np.testing.assert_array_equal(qpass.stacked_codes().numpy(), res.codes.numpy())
    capture.remove()


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="divide"):
        ProductVectorQuantizer(dimension=10, n_q=4)
    with pytest.raises(ValueError, match="x: expected"):
        make_pvq()(torch.zeros(2, D + 1, 3), FRAME_RATE)


def encodec_cfg(**overrides) -> OmegaConf:
    """audiocraft's encodec defaults + our PVQ model config, merged by hand (no Hydra), small SEANet."""
    from mmd_audiocraft.integration.seams import audiocraft_config_dir

    stock = OmegaConf.load(audiocraft_config_dir() / "model" / "encodec" / "default.yaml")
    ours = OmegaConf.load(ROOT / "config" / "model" / "encodec" / "encodec_pvq_nq4.yaml")
    ours.pop("defaults")
    base = OmegaConf.create({"sample_rate": 32000, "channels": 1, "device": "cpu"})
    small = OmegaConf.create({"seanet": {"n_filters": 4, "lstm": 0}, **overrides})
    return OmegaConf.merge(base, stock, ours, small)


def test_audiocraft_builder_makes_pvq_from_config_and_keeps_rvq():
    from audiocraft.models import builders
    from audiocraft.quantization import ResidualVectorQuantizer

    install_quantizers()
    install_quantizers()  # idempotent: wraps the stock builder once
    stock = builders.get_quantizer.__mmd_audiocraft_wraps__  # plugin.wrap_once: what the wrapper replaced
    assert not hasattr(stock, "__mmd_audiocraft_wraps__") and stock.__module__ == "audiocraft.models.builders"
    model = builders.get_compression_model(encodec_cfg())
    assert isinstance(model.quantizer, ProductVectorQuantizer)
    assert (model.quantizer.total_codebooks, model.quantizer.bins, model.quantizer.group_dim) == (4, 2048, 32)
    assert model.frame_rate == 50 and model.cardinality == 2048 and model.num_codebooks == 4
    wav = torch.randn(2, 1, 32000 // 5)
    codes, scale = model.encode(wav)  # what MusicGen does with the codec
    assert codes.shape == (2, 4, 10) and scale is None and model.decode(codes).shape == wav.shape
    rvq = builders.get_compression_model(encodec_cfg(encodec={"quantizer": "rvq"}))
    assert isinstance(rvq.quantizer, ResidualVectorQuantizer)
    cfg = encodec_cfg()
    cfg.pop("pvq")
    with pytest.raises(ValueError, match="pvq"):
        builders.get_compression_model(cfg)


@pytest.mark.slow
def test_pvq_with_dropout_trains_with_the_independence_loss(tmp_path, tiny_corpus):
    """The tiny codec with PVQ + hierarchical dropout and the MMD loss, one short epoch through our main."""
    dora_dir = tmp_path / "dora"
    run_dora(["run", *TINY, "model=encodec/encodec_pvq_nq4", "seanet.ratios=[8,5,4,2]", "pvq.bins=128",
              "pvq.kmeans_iters=10", "pvq.hierarchical_dropout=true", "losses.inde=1000",
              "dataset.evaluate.num_samples=4"], dora_dir, tiny_corpus)
    (xp,) = xp_dirs(dora_dir)
    (epoch,) = history(xp)
    full = 4 * 7 * 50 / 1000  # 4 codebooks x log2(128) bits x 50 Hz
    assert epoch["valid"]["bandwidth"] == pytest.approx(full)
    assert epoch["train"]["bandwidth"] < full  # dropout kept fewer codebooks on average
    assert np.isfinite(epoch["train"]["inde"]) and epoch["train"]["inde_weight"] == 1000
    assert "tc_pair_pct" in epoch["evaluate"] and "mi_rest_q3_bits" in epoch["evaluate"]
    assert (xp / "checkpoint.th").exists()
