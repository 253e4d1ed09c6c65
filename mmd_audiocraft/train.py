"""The plugin's Dora main: `dora -P mmd_audiocraft run|grid|info ...`.

audiocraft's config tree (plus ours, appended to its search path), audiocraft's own `main` body and Dora folder,
so `//sig/SIG` resolves from either side; only the solver selection is extended, from outside.
"""
from .integration.process import prepare_process
from .integration.seams import audiocraft_config_dir, install_all

prepare_process()  # USER, offline hub, os.getlogin: before audiocraft and Dora read them (integration/process.py)

from audiocraft import train as audiocraft_train  # noqa: E402
from audiocraft.utils.cluster import get_slurm_parameters  # noqa: E402
from dora import hydra_main  # noqa: E402

from .integration.distributed import init_distributed  # noqa: E402
from .integration.errors import CheckpointWriteError, ConfigError  # noqa: E402
from .integration.xps import install_folder_rules  # noqa: E402

install_all()  # every seam (integration/seams.py): config search path, checkpoints, solver selection and preflight


@hydra_main(config_path=str(audiocraft_config_dir()), config_name="mmd_config", version_base="1.1")
def main(cfg):
    install_all()  # idempotent; a process that imported this module before audiocraft.train is covered too
    init_distributed(cfg.device)  # NCCL on CUDA, gloo otherwise (audiocraft's default needs GPUs)
    try:
        return audiocraft_train.main.main(cfg)
    except ConfigError as exc:  # a config that cannot run (integration/preflight.py): one line, no traceback
        raise SystemExit(f"mmd_audiocraft: config error: {exc}") from None
    except CheckpointWriteError as exc:  # the cause first (integration/errors.py), the previous checkpoint kept
        raise SystemExit(f"mmd_audiocraft: checkpoint not written: {exc.strerror}") from None


main.dora.dir = audiocraft_train.main.dora.dir
main.dora.shared = audiocraft_train.main.dora.shared
main.dora.grid_package = "mmd_audiocraft.grids"
install_folder_rules(main)  # execute_inplace and accept_codec_change unsigned; one-stage runs keep the XP's argv
main._base_cfg.slurm = get_slurm_parameters(main._base_cfg.slurm)

if __name__ == "__main__":
    main()
