"""The glue between the math (`mmd_audiocraft.core`) and audiocraft, Dora, Hydra and torch.distributed.

May import `core` and the frameworks; never `apps`. Every place where the plugin reaches into audiocraft, Dora or
Hydra is listed in `seams.py`.

    seams.py        every seam into audiocraft/Dora/Hydra, in one table    solver.py     MMDCompressionSolver
    process.py      USER, offline hub, safe globals: before audiocraft
    options.py      the `inde` node, parsed once into typed options        errors.py     one-line errors, cause first
    codebooks_pattern.py  the LM's pattern: provider and its checks        capture.py    per-codebook vectors (hooks)
    evaluation.py   independence metrics of the evaluate stage             guard.py      codebook usage, the guard
    distributed.py  multi-process loss, merges, per-rank state             preflight.py  config checks before a build
    metric_requirements.py  what FAD, KL and CLAP need downloaded, and what is missing
    loaders.py      load a codec from a path, //sig/ or //pretrained/      pvq.py        product VQ quantizer
    pretrained.py   Hugging Face EnCodec weight-norm key names
"""
