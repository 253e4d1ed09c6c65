"""Import stub of spacy for benchmarks/gpu_check.sh only (see ../README.md): audiocraft's conditioners import it
at module import, only the LM's text conditioners call it. Any attribute raises ImportError."""


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"spacy.{name}: spacy is an import stub here (benchmarks/gpu_stubs, installed by "
                      "benchmarks/gpu_check.sh); the codec path must not use it")
