"""The environment really trains: audiocraft's stock debug codec, one short epoch, through our Dora main."""
import pytest

from .conftest import history, run_dora, xp_dirs

pytestmark = pytest.mark.slow


def test_stock_compression_debug_trains_through_our_main(tmp_path, tiny_corpus):
    dora_dir = tmp_path / "dora"
    run_dora(["run", "solver=compression/debug", "dset=audio/mmd_music_16khz", "device=cpu", "optim.epochs=1",
              "optim.updates_per_epoch=3", "dataset.num_workers=0", "evaluate.num_workers=0",
              "dataset.train.num_samples=24", "dataset.valid.num_samples=8", "dataset.evaluate.num_samples=8",
              "dataset.generate.num_samples=1", "generate.audio.format=wav"], dora_dir, tiny_corpus)
    (xp,) = xp_dirs(dora_dir)
    (epoch,) = history(xp)
    assert {"train", "valid", "evaluate"} <= set(epoch)
    assert epoch["train"]["l1"] > 0 and "inde" not in epoch["train"]  # losses.inde = 0: the stock step
    assert "tc_pair_pct" in epoch["evaluate"]  # independence metrics are logged for baselines too
    assert (xp / "checkpoint.th").exists()
