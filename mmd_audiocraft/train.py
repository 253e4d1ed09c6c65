"""The plugin's Dora main: `dora -P mmd_audiocraft run|grid|info ...`.

audiocraft's config tree (plus ours, appended to its search path), audiocraft's own `main` body and Dora folder,
so `//sig/SIG` resolves from either side; only the solver selection is extended, from outside.
"""
from .environment import audiocraft_config_dir, login_name_fallback, prepare_environment

prepare_environment()
login_name_fallback()  # `dora grid` calls os.getlogin(), which fails without a terminal (CI, containers)

from audiocraft import train as audiocraft_train  # noqa: E402
from audiocraft.utils.cluster import get_slurm_parameters  # noqa: E402
from dora import hydra_main  # noqa: E402

from .checkpoint_loading import install_checkpoint_loading  # noqa: E402
from .config_search_path import register_config_search_path  # noqa: E402
from .distributed import init_distributed  # noqa: E402
from .solvers import install_solver_selection  # noqa: E402
from .solvers.preflight import ConfigError  # noqa: E402

register_config_search_path()


@hydra_main(config_path=str(audiocraft_config_dir()), config_name="mmd_config", version_base="1.1")
def main(cfg):
    install_checkpoint_loading()
    install_solver_selection()
    init_distributed(cfg.device)  # NCCL on CUDA, gloo otherwise (audiocraft's default needs GPUs)
    try:
        return audiocraft_train.main.main(cfg)
    except ConfigError as exc:  # a config that cannot run (solvers/preflight.py): one line, no traceback
        raise SystemExit(f"mmd_audiocraft: config error: {exc}") from None


main.dora.dir = audiocraft_train.main.dora.dir
main.dora.shared = audiocraft_train.main.dora.shared
main.dora.grid_package = "mmd_audiocraft.grids"
main._base_cfg.slurm = get_slurm_parameters(main._base_cfg.slurm)

if __name__ == "__main__":
    main()
