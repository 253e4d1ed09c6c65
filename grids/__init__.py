"""The Dora grids of the paper's experiments (`dora -P mmd_audiocraft grid NAME`), in the layout of audiocraft's
`grids/`: one module per grid, the shared definitions in `_paper.py` (which codecs and LMs), `_profile.py` (at
which scale: the paper's GPUs or a CPU), `_chain.py` (XPs that wait for another: LMs for their codec, evaluations
for their LM) and `_explorers.py` (the tables). Shipped inside the package as `mmd_audiocraft.grids`: Dora imports
grids from the main's package.
Layer: applications (imports `mmd_audiocraft.integration` and `mmd_audiocraft.train`, never the reverse)."""
