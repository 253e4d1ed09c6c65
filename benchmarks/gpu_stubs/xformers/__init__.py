"""Import stub of xformers for benchmarks/gpu_check.sh only (see ../README.md): audiocraft imports
`xformers.ops` at module import, the codec path never calls it. Any other attribute raises ImportError."""
from . import ops  # noqa: F401  (`from xformers import ops` asks the package for the attribute first)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"xformers.{name}: xformers is an import stub here (benchmarks/gpu_stubs, installed by "
                      "benchmarks/gpu_check.sh); the codec path must not use it")
