"""The applications built on the library: the `mmd-audiocraft` command (`cli.py`: `measure`, `compare`) and the
demo (`demo/`). May import `core` and `integration`; nothing in the library imports them.

    cli.py           argument parsing and error reporting     measure.py, measure_table.py  `mmd-audiocraft measure`
    manifest.py      audiocraft manifests and segments        compare.py, compare_plot.py   `mmd-audiocraft compare`
    demo/            `make demo`: corpus, codecs, LMs, measurements
"""
