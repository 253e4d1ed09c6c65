"""The plugin's Hydra configs, in the layout of audiocraft's own `config/` tree (`solver/`, `model/`, `dset/`, and
the primary `mmd_config.yaml`). No code lives here: this file makes the tree the importable package
`mmd_audiocraft.config`, so that `importlib.resources` finds the YAML files wherever the package is installed
(wheel, sdist or editable checkout), and Hydra's search path points at them (`integration/seams.py`)."""
