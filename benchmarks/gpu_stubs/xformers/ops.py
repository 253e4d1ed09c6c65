"""Import stub of xformers.ops for benchmarks/gpu_check.sh only (see ../README.md). Any attribute raises
ImportError: audiocraft's memory-efficient attention would use it, the codec path never does."""


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"xformers.ops.{name}: xformers is an import stub here (benchmarks/gpu_stubs, installed by "
                      "benchmarks/gpu_check.sh); the codec path must not use it")
