"""The demo application (`make demo`), apart from the library: a real-music corpus (`corpus.py`, built from
Debian's music packages) and the codec comparison that trains and measures on it (`run.py`).

    python -m mmd_audiocraft.apps.demo [--quick] ...        the demo (run.py)
    python -m mmd_audiocraft.apps.demo.corpus [--out DIR]   the corpus alone (corpus.py)
"""
