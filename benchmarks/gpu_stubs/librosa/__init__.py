"""Import stub of librosa for benchmarks/gpu_check.sh only (see ../README.md): audiocraft's chroma extractor
imports `librosa.filters` at module import, only melody conditioning calls it. Any other attribute raises
ImportError."""
from . import filters  # noqa: F401  (`from librosa import filters` asks the package for the attribute first)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"librosa.{name}: librosa is an import stub here (benchmarks/gpu_stubs, installed by "
                      "benchmarks/gpu_check.sh); the codec path must not use it")
