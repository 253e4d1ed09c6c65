"""Our config/ appended to audiocraft's Hydra config tree (never shadowing it), for our Dora main only.

A search-path plugin registered by the main, rather than `hydra.searchpath` in a primary config: Dora lists
config groups and computes signatures from the main's config_path, so both keep seeing audiocraft's tree,
and stock `dora -P audiocraft` runs are left exactly as they are.
"""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from .environment import plugin_config_dir


class MMDAudiocraftSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="mmd-audiocraft", path=f"file://{plugin_config_dir()}")


def register_config_search_path() -> None:
    """Idempotent."""
    plugins = Plugins.instance()
    if MMDAudiocraftSearchPath not in plugins.class_name_to_class.values():
        plugins.register(MMDAudiocraftSearchPath)
