"""Every command line README.md, docs/ and examples/ show (their ```bash blocks) is exercised, as written.

TABLE says how, for each documented command (normalised by tests/documentation.py), and a command missing from
it fails the first test. Placeholders (SIG, paths like /checkpoint/$USER/mmd, <your dset>) are replaced by the
test's own (SUBSTITUTIONS); no override is added to any command. The ways:
- RUN: really run here by bash, in document order, on the fixture corpus;
- IN_PROCESS: really run, in the dry-run process (tests/dry_run_driver.py): `export`, `python -c`, `dora info`;
- DRY: a cluster-scale command (the paper's 32 kHz codec on GPUs, SLURM grids): `dora run` composes the XP,
  builds the solver through our main's checks and restores it (continue_from loaded), without training;
  `dora grid` runs with --dry_run --init;
- a test or CI job that runs exactly this command (tests read it with `documentation.documented`).
"""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmd_audiocraft.integration.xps import DRIFT_CACHE_NAMES

from . import documentation
from .conftest import ROOT, dora_env, run_driver

RUN, IN_PROCESS, DRY = "run", "in-process", "dry-run"
CI = "CI: .ci/run runs it"
ADVICE = ("a refusal's advice: tests/test_evaluate_only.py and tests/test_grid_clear.py run it as the refusal "
          "prints it, and check that it is the documented command")
INSTALL = "tests/test_install_metadata.py::test_the_documented_install_into_a_torch_environment_pairs_its_stack"
SETUP = "make setup: scripts/setup_env.sh installs both packages the same way (editable, offline)"
DEMO_QUICK = "CI: .ci/run runs `make demo-quick`, this target with --quick"
DDP = "tests/test_distributed.py::test_two_process_training_run"
TINY_CODEC = "tests/conftest.py::trained_codec"
COMPARE = "tests/test_compare.py::weights_grid"
# The one-node SLURM walkthrough: tests/test_slurm_cluster.py runs the same script actions and `dora grid` calls
# (MMD_GRID_PROFILE=cpu, --no_git_save, -i, -C) on a cluster of its own (state dir, ports), not this text as is.
SLURM = "tests/test_slurm_cluster.py: the same actions and grids, on the test's own cluster"

EXPORT_SNIPPET = "\n".join([
    "python -c ",
    "from mmd_audiocraft.integration.seams import trusting_torch_load   # torch >= 2.6: trust your own file",
    "from audiocraft.utils.export import export_encodec",
    "with trusting_torch_load():",
    "    export_encodec('/checkpoint/me/mmd/xps/SIG/checkpoint.th', '/data/codecs/mine/compression_state_dict.bin')",
])
FT_RECIPE = "dora -P mmd_audiocraft run solver=compression/encodec_mmd_finetune_32khz dset=<your dset>"
CODEC32 = "dora -P mmd_audiocraft run solver=compression/encodec_musicgen_32khz"

TABLE = {
    "README.md": {
        "export MMD_DATA=/data/my_music/manifests": IN_PROCESS,
        "make demo": DEMO_QUICK,
        "make test": CI,
        f"{CODEC32} dset=<your dset> losses.inde=1000": DRY,
        "export AUDIOCRAFT_DORA_DIR=/checkpoint/$USER/mmd": IN_PROCESS,
        "dora -P mmd_audiocraft grid mmd_codec_decoding": DRY,
        "dora -P mmd_audiocraft grid mmd_musicgen": DRY,
        "dora -P mmd_audiocraft run solver=compression/encodec_mmd_finetune_32khz dset=<your dset> "
        "continue_from=//pretrained/facebook/encodec_32khz": DRY,
        "mmd-audiocraft measure --model //sig/SIG --data /path/to/manifest_dir --json report.json": RUN,
        "mmd-audiocraft compare mmd_codec_weights --json weights.json --plot weights.png": COMPARE,
    },
    "docs/INSTALL.md": {
        "pip install -e /path/to/audiocraft --no-deps": SETUP,
        "pip install -e /path/to/mmd-audiocraft[torch21]": INSTALL,
        "pip install -e /path/to/mmd-audiocraft[torch211]": INSTALL,
        f"{CODEC32} dset=<your dset> losses.inde=1000": DRY,
    },
    "docs/DATA.md": {
        **{f"python -m audiocraft.data.audio_dataset /data/my_music/audio/{split} "
           f"/data/my_music/manifests/{split}/data.jsonl": RUN for split in ("train", "valid", "evaluate", "generate")},
        "export MMD_DATA=/data/my_music/manifests": RUN,
        "mmd-audiocraft check mmd_codec_decoding": RUN,
    },
    "docs/CLUSTER.md": {
        "export AUDIOCRAFT_CONFIG=/home/me/my_team.yaml": RUN,
        "export MMD_GRID_SLURM=/home/me/slurm.yaml": RUN,
        "mmd-audiocraft check mmd_musicgen": RUN,
    },
    "docs/RUNS.md": {
        "dora -P mmd_audiocraft run -f SIG execute_only=evaluate execute_inplace=true": ADVICE,
        "dora -P mmd_audiocraft run -f SIG continue_from=//sig/SIG execute_only=evaluate": ADVICE,
        "dora -P mmd_audiocraft run --clear -f SIG": ADVICE,
    },
    "docs/TRAINING.md": {
        f"{CODEC32} dset=audio/mmd_music_32khz losses.inde=1000": DRY,
        "dora -P mmd_audiocraft run solver=compression/encodec_mmd_musicgen_32khz dset=<your dset>": DRY,
        "dora -P mmd_audiocraft run solver=compression/encodec_mmd_tiny losses.inde=1000 optim.epochs=1 "
        "optim.updates_per_epoch=4": TINY_CODEC,
    },
    "docs/GRIDS.md": {
        "export MMD_FAD_BIN=/checkpoint/$USER/google-research": IN_PROCESS,
        "export TF_PYTHON_EXE=/checkpoint/$USER/tf-env/bin/python": IN_PROCESS,
        "export AUDIOCRAFT_REFERENCE_DIR=/checkpoint/$USER/reference": IN_PROCESS,
        "dora -P mmd_audiocraft grid mmd_musicgen_eval": DRY,
    },
    "docs/MEASURING.md": {
        # the demo's codecs and held-out split: run on the session's tiny codec and the fixture (SUBSTITUTIONS)
        "export AUDIOCRAFT_DORA_DIR=~/.cache/mmd-audiocraft/demo/dora": RUN,
        "mmd-audiocraft measure --model //sig/e3d7dfed --data ~/.cache/mmd-audiocraft/corpus/music_16khz/evaluate "
        "--json baseline.json": RUN,
        "mmd-audiocraft compare //sig/e3d7dfed //sig/2f6be717 //sig/3a8afa06": RUN,
        "mmd-audiocraft measure --model //sig/SIG --data /path/to/manifest_dir [--max-frames N] "
        "[--pattern delay|parallel] [--json OUT.json] [--plot OUT.png] [--batch-size 8] [--segment 10] "
        "[--device cpu] [--mmd-rows 4096] [--null-shuffles 3] [--seed 0] [--trust-checkpoint] [--gap] "
        "[--gap-seeds 3] [--reference MODEL] [--stability]": RUN,
        "mmd-audiocraft measure --model //sig/SIG --reference //sig/SOURCE --stability --data /path/to/manifest_dir "
        "--json moved.json": RUN,
        # the same command as the README's, which the compare test reads
        "mmd-audiocraft compare mmd_codec_weights --json weights.json --plot weights.png": COMPARE,
    },
    "docs/MULTI_GPU.md": {
        "dora -P mmd_audiocraft run -d --ddp_workers 2 solver=compression/encodec_mmd_tiny losses.inde=1000 "
        "inde.global=true optim.epochs=1 optim.updates_per_epoch=2": DDP,
    },
    "examples/cluster_walkthrough.md": {
        "export AUDIOCRAFT_DORA_DIR=/checkpoint/$USER/mmd": IN_PROCESS,
        "export MMD_DATA=/data/my_music/manifests": IN_PROCESS,
        "dora -P mmd_audiocraft grid mmd_codec_decoding": DRY,
        "dora -P mmd_audiocraft grid mmd_codec_weights": DRY,
        "dora -P mmd_audiocraft grid mmd_codec_kernels": DRY,
        "dora -P mmd_audiocraft grid mmd_codec_quantizers": DRY,
        "MMD_FINETUNE_FROM=//pretrained/facebook/encodec_32khz dora -P mmd_audiocraft grid mmd_codec_finetune": DRY,
        "dora -P mmd_audiocraft grid mmd_codec_weights --no_monitoring": DRY,
        # `-t` execs `tail -f` on the SLURM job's log (interactive; a dry run has no job): SUBSTITUTIONS asks for
        # the same XP's folder instead (`--folder 2`), which resolves the same index
        "dora -P mmd_audiocraft grid mmd_codec_weights -t 2": DRY,
        "dora -P mmd_audiocraft info -f SIG -m": IN_PROCESS,
        "dora -P mmd_audiocraft grid mmd_musicgen": DRY,
        "dora -P mmd_audiocraft grid mmd_codec_decoding --dry_run --init": IN_PROCESS,
        "dora -P mmd_audiocraft run -f SIG": DRY,
        "dora -P mmd_audiocraft run -d -f SIG": DRY,
        # the walkthrough's CPU chain trains the tiny codec's full 8 epochs (~7 min): dry-run until it shows a
        # short budget (then RUN, as tests/test_chain_lm.py's chain)
        "export HF_HUB_OFFLINE=1 AUDIOCRAFT_DORA_DIR=/tmp/mmd/dora": IN_PROCESS,
        "dora -P mmd_audiocraft run solver=compression/encodec_mmd_tiny losses.inde=1000 encodec.renormalize=false":
            DRY,
        "dora -P mmd_audiocraft info solver=compression/encodec_mmd_tiny losses.inde=1000 "
        "encodec.renormalize=false": IN_PROCESS,
        "dora -P mmd_audiocraft run solver=musicgen/musicgen_mmd_tiny compression_model_checkpoint=//sig/SIG": DRY,
        "scripts/slurm_cluster.sh start": SLURM,
        "eval $(scripts/slurm_cluster.sh env)": SLURM,
        "export MMD_GRID_PROFILE=cpu AUDIOCRAFT_DORA_DIR=/tmp/mmd/dora HF_HUB_OFFLINE=1": SLURM,
        "python -m mmd_audiocraft.apps.demo.corpus --quick": SLURM,
        "export MMD_AUDIOCRAFT_CORPUS=~/.cache/mmd-audiocraft/corpus/quick": SLURM,
        "dora -P mmd_audiocraft grid mmd_codec_decoding --no_git_save -i 0.1": SLURM,
        "dora -P mmd_audiocraft grid mmd_musicgen --no_git_save --no_monitoring": SLURM,
        "dora -P mmd_audiocraft grid mmd_musicgen --no_git_save -i 0.1": SLURM,
        "dora -P mmd_audiocraft grid mmd_musicgen unroll --no_git_save -C": SLURM,
        "dora -P mmd_audiocraft grid mmd_musicgen_eval --no_git_save -i 0.1": SLURM,
        "scripts/slurm_cluster.sh status": SLURM,
        "scripts/slurm_cluster.sh stop": SLURM,
    },
    "examples/finetune_existing_codec.md": {
        "export AUDIOCRAFT_DORA_DIR=/checkpoint/$USER/mmd": IN_PROCESS,
        f"{FT_RECIPE} continue_from=//sig/SIG": DRY,
        f"{FT_RECIPE} continue_from=/checkpoint/me/mmd/xps/SIG/checkpoint.th": DRY,
        EXPORT_SNIPPET: IN_PROCESS,
        f"{FT_RECIPE} continue_from=//pretrained//data/codecs/mine/compression_state_dict.bin": DRY,
        f"{FT_RECIPE} continue_from=//pretrained/facebook/encodec_32khz": DRY,
        "python -m mmd_audiocraft.apps.demo.corpus --out /tmp/ft/corpus --quick": RUN,
        "export HF_HUB_OFFLINE=1 AUDIOCRAFT_DORA_DIR=/tmp/ft/dora MMD_AUDIOCRAFT_CORPUS=/tmp/ft/corpus/quick": RUN,
        "TINY=solver=compression/encodec_mmd_tiny optim.epochs=1 optim.updates_per_epoch=5 evaluate.every=1": RUN,
        "dora -P mmd_audiocraft run $TINY": RUN,
        "SIG=$(ls $AUDIOCRAFT_DORA_DIR/xps)": RUN,
        "dora -P mmd_audiocraft run $TINY losses.inde=1000 continue_from=//sig/$SIG": RUN,
    },
}

# (pattern, replacement) applied to each command's text, per document, before it runs. $WORK is the test's
# folder; the SIGs come from the runs before (the driver sets $GRID_SIG after a grid, $CODEC32_SIG when it
# prepares the 32 kHz codec the fine-tuning example starts from).
# The evaluation metrics' downloads (docs/GRIDS.md): a fake installation the test lays out under $WORK/installed
# (tests/test_lm_eval.py: fake_installation), with $PYTHON (the test's interpreter) as the TensorFlow interpreter.
METRIC_DOWNLOADS = [(r"/checkpoint/\$USER/google-research", "$WORK/installed/google-research"),
                    (r"/checkpoint/\$USER/tf-env/bin/python", "$PYTHON"),
                    (r"/checkpoint/\$USER/reference", "$WORK/installed/reference")]
MY_DATA = (r"/data/my_music/manifests", "$MMD_AUDIOCRAFT_CORPUS/music_32khz")  # the user's manifests: the fixture's
SUBSTITUTIONS = {
    "README.md": [MY_DATA, (r"<your dset>", "audio/mmd_music_32khz"), (r"/checkpoint/\$USER/mmd", "$WORK/readme/dora"),
                  (r"/path/to/manifest_dir", "$CORPUS/music_16khz/evaluate"), (r"//sig/SIG\b", "//sig/$TINY_SIG")],
    "docs/INSTALL.md": [(r"<your dset>", "audio/mmd_music_32khz")],
    "docs/TRAINING.md": [(r"<your dset>", "audio/mmd_music_32khz")],
    "docs/GRIDS.md": [MY_DATA, (r"/checkpoint/\$USER/mmd", "$WORK/grids/dora"), *METRIC_DOWNLOADS],
    "docs/MEASURING.md": [(r"\s*\\\n\s*", " "), (r"\s*\[[^\]]*\]", ""),
                          (r"/path/to/manifest_dir", "$CORPUS/music_16khz/evaluate"),
                          (r"//sig/SIG\b", "//sig/$TINY_SIG"), (r"//sig/SOURCE\b", "//sig/$TINY_SIG"),
                          (r"~/\.cache/mmd-audiocraft/demo/dora", "$AUDIOCRAFT_DORA_DIR"),  # the demo's, as the
                          (r"~/\.cache/mmd-audiocraft/corpus", "$CORPUS"),  # session's codec and the fixture
                          (r"//sig/[0-9a-f]{8}\b", "//sig/$TINY_SIG")],
    "docs/MULTI_GPU.md": [],
    "docs/DATA.md": [(r"/data/my_music", "$WORK/my_music")],
    "docs/CLUSTER.md": [(r"/home/me", "$WORK/me")],
    "docs/RUNS.md": [],
    "examples/cluster_walkthrough.md": [MY_DATA, (r"/checkpoint/\$USER/mmd", "$WORK/cluster/dora"),
                                        (r" -t 2\b", " --folder 2"),
                                        *METRIC_DOWNLOADS,
                                        (r"/tmp/mmd/dora", "$WORK/chain/dora"),
                                        (r"//sig/SIG\b", "//sig/$LM_CODEC_SIG"), (r"-f SIG\b", "-f $GRID_SIG")],
    "examples/finetune_existing_codec.md": [(r"<your dset>", "audio/mmd_music_32khz"),
                                            (r"/checkpoint/\$USER/mmd|/checkpoint/me/mmd", "$WORK/finetune/dora"),
                                            (r"/data/codecs/mine", "$WORK/codecs/mine"), (r"/tmp/ft", "$WORK/ft"),
                                            (r"//sig/SIG\b|xps/SIG\b", lambda m: m[0][:-3] + "$CODEC32_SIG")],
}
# what the driver does first for a document (e.g. the codec the fine-tuning example starts from)
DRIVER_SETUP = {
    "README.md": ["AUDIOCRAFT_DORA_DIR=$WORK/readme/dora"],
    "docs/INSTALL.md": ["AUDIOCRAFT_DORA_DIR=$WORK/install/dora"],
    "docs/TRAINING.md": ["AUDIOCRAFT_DORA_DIR=$WORK/training/dora"],
    "examples/finetune_existing_codec.md": ["AUDIOCRAFT_DORA_DIR=$WORK/finetune/dora", "prepare-codec32"],
}  # (the other documents need no setup)


def substituted(command: documentation.Command) -> str:
    text = command.text
    for pattern, replacement in SUBSTITUTIONS[command.doc]:
        text = re.sub(pattern, replacement, text)
    return text


def test_every_documented_command_has_a_way_to_run():
    documented = {doc: [c.key for c in documentation.commands(doc)] for doc in documentation.DOCS}
    missing = [f"{doc}: {key!r}" for doc, keys in documented.items() for key in keys
               if key not in TABLE.get(doc, {})]
    stale = [f"{doc}: {key!r}" for doc, table in TABLE.items() for key in table if key not in documented.get(doc, [])]
    assert not missing, "documented commands without an entry in TABLE:\n" + "\n".join(missing)
    assert not stale, "TABLE entries no longer documented:\n" + "\n".join(stale)


def test_commands_run_elsewhere_are_run_there():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M) and re.search(r"^make demo-quick$", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "demo-quick: setup\n\t$(PY) -m mmd_audiocraft.apps.demo --quick $(DEMO_ARGS)" in makefile
    assert "demo: setup\n\t$(PY) -m mmd_audiocraft.apps.demo $(DEMO_ARGS)" in makefile
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert 'pip install --quiet --no-deps --no-build-isolation -e "$src"' in setup  # audiocraft's sdist
    assert 'pip install --quiet --no-deps --no-build-isolation -e "$root"' in setup  # this checkout
    from . import conftest, test_compare, test_distributed, test_install_metadata

    install_test = test_install_metadata.test_the_documented_install_into_a_torch_environment_pairs_its_stack

    # the tests named in TABLE read their command from the documentation
    for how, function in ((DDP, test_distributed.test_two_process_training_run),
                          (TINY_CODEC, conftest.trained_codec), (COMPARE, test_compare.weights_grid),
                          (INSTALL, install_test)):
        assert how in {h for table in TABLE.values() for h in table.values()}
        assert "documented(" in inspect.getsource(getattr(function, "__wrapped__", function)), how


@pytest.mark.slow
def test_dry_runs_and_in_process_commands(tmp_path, tiny_corpus, lm_codec):
    """One process runs every DRY and IN_PROCESS command, document by document, in order."""
    codec = lm_codec[1]
    shutil.copytree(codec, tmp_path / "chain" / "dora" / "xps" / codec.name)  # the walkthrough's SIG
    from .test_finetune import fake_hf_cache

    fake_hf_cache(tmp_path / "hf")  # the documented route to facebook/encodec_32khz without the hub
    from .test_lm_eval import fake_installation

    installed = fake_installation(tmp_path / "installed", hf_cache=tmp_path / "hf")  # the evaluations' downloads

    steps = []
    for doc in documentation.DOCS:
        steps += [{"key": f"{doc}: setup {s}", "words": s.split()} for s in DRIVER_SETUP.get(doc, [])]
        for command in documentation.commands(doc):
            if TABLE[doc][command.key] in (DRY, IN_PROCESS):
                steps.append({"key": f"{doc}: {command.key}", "words": documentation.words(substituted(command))})
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    env = dora_env(tmp_path / "unused", tiny_corpus, WORK=str(tmp_path), LM_CODEC_SIG=codec.name,
                   HF_HUB_CACHE=str(tmp_path / "hf"), PYTHON=sys.executable, PYTHONPATH=str(installed["site"]),
                   TORCH_HOME=str(installed["torch_home"]))
    results = run_driver([str(ROOT / "tests" / "dry_run_driver.py"), str(tmp_path / "steps.json")], env, tmp_path,
                         timeout=1200)
    assert [r["key"] for r in results] == [s["key"] for s in steps]
    failed = [f"{r['key']}\n{r['detail']}" for r in results if not r["ok"]]
    assert not failed, "\n\n".join(failed)


def bash(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    path = dict(os.environ, **env, WORK=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    path.pop("USER", None)
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=path, cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200)


def run_commands(doc: str) -> str:
    return "\n".join(substituted(c) for c in documentation.commands(doc) if TABLE[doc][c.key] == RUN)


@pytest.mark.slow
@pytest.mark.parametrize("doc", ["README.md", "docs/MEASURING.md"])
def test_measure_commands_on_the_documented_tiny_codec(doc, tmp_path, tiny_corpus, trained_codec):
    dora_dir, codec = trained_codec
    proc = bash(run_commands(doc), tmp_path, AUDIOCRAFT_DORA_DIR=str(dora_dir), TINY_SIG=codec.name,
                CORPUS=str(tiny_corpus), HF_HUB_OFFLINE="1")
    for name in DRIFT_CACHE_NAMES.values():  # `--reference` on the session's codec cached these in its folder
        (codec / name).unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Paper protocol" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_finetune_example_cpu_check(tmp_path, tiny_corpus):
    """The example's quick CPU check, as written: its corpus command finds the corpus ready (no network in
    tests: the fixture, marked as the quick corpus; tests/test_corpus.py builds one from local packages)."""
    from mmd_audiocraft.apps.demo import corpus

    quick = tmp_path / "ft" / "corpus" / "quick"
    for sample_rate in corpus.DEFAULT_SAMPLE_RATES:
        for split in ("train", "valid", "evaluate", "generate"):
            (quick / corpus.rate_dir_name(sample_rate) / split).mkdir(parents=True)
            shutil.copy(tiny_corpus / "music_16khz" / split / "data.jsonl", quick / corpus.rate_dir_name(sample_rate)
                        / split)
    _, files = corpus.load_sources()
    key = corpus.corpus_key(corpus.QUICK_PLAN, [f for f in files if f.package in corpus.QUICK_PLAN.packages])
    (quick / corpus.MARKER).write_text(json.dumps({"key": key, "sample_rates": list(corpus.DEFAULT_SAMPLE_RATES)}))

    proc = bash(run_commands("examples/finetune_existing_codec.md"), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "corpus ready" in proc.stdout + proc.stderr
    xps = sorted((tmp_path / "ft" / "dora" / "xps").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(xps) == 2 and all((xp / "checkpoint.th").exists() for xp in xps)
    assert f"Continuing from provided checkpoint: //sig/{xps[0].name}" in (xps[1] / "solver.log.0").read_text()


def yaml_blocks(doc: str) -> dict[str, str]:
    """file name -> text of the ```yaml blocks of `doc` that open with `# /path/NAME`."""
    blocks = re.findall(r"^```yaml\n# (\S+)\n(.*?)^```", (ROOT / doc).read_text(), re.S | re.M)
    return {Path(path).name: text for path, text in blocks}


@pytest.mark.slow
@pytest.mark.default_stack
def test_your_data_and_your_cluster_pages_as_written(tmp_path):
    """docs/DATA.md then docs/CLUSTER.md, in one shell as a user types them: manifests of their 32 kHz music (with
    text descriptions), MMD_DATA, their team config and SLURM YAML (the pages' YAML blocks, as files), and the
    check passing for the codec and the LM grids. SLURM is an `sinfo` listing the team config's partition."""
    from .conftest import fake_t5_cache, user_dataset

    dataset = user_dataset(tmp_path / "dataset", sample_rate=32000)
    for split in ("train", "valid", "evaluate", "generate"):
        shutil.copytree(dataset / "audio", tmp_path / "my_music" / "audio" / split)
    (tmp_path / "me").mkdir()
    blocks = yaml_blocks("docs/CLUSTER.md")
    assert set(blocks) == {"my_team.yaml", "slurm.yaml"}
    for name, text in blocks.items():
        (tmp_path / "me" / name).write_text(text.replace("/checkpoint/me", str(tmp_path / "checkpoint")))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sinfo").write_text("#!/bin/sh\necho 'debug*'\necho gpu_long\n")
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sinfo", "sbatch"):
        (tmp_path / "bin" / tool).chmod(0o755)
    fake_t5_cache(tmp_path / "hf")
    script = "\n".join([run_commands("docs/DATA.md"), run_commands("docs/CLUSTER.md")])
    proc = bash(f"export PATH={tmp_path / 'bin'}:$PATH\n" + script, tmp_path, HF_HUB_OFFLINE="1",
                HF_HUB_CACHE=str(tmp_path / "hf"), AUDIOCRAFT_REFERENCE_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"grid mmd_codec_decoding@paper-[0-9a-f]{8}: nothing missing", proc.stdout)
    assert re.search(r"grid mmd_musicgen@paper-[0-9a-f]{8}: nothing missing", proc.stdout)
    assert (tmp_path / "checkpoint" / "mmd").is_dir()  # the team config's Dora dir, checked writable


def test_make_test_says_what_the_slurm_test_installs_and_its_advice_leaves_it_out():
    """As root outside CI, `make test` prints what the SLURM test installs and starts before anything runs, and
    names SLURM=0, which leaves that test out (checked by make's dry run: what each would execute)."""
    def dry(*args: str) -> str:
        # CI runs the suite inside its own make (`make test STACK=latest` too): the caller's MAKEFLAGS/MAKELEVEL would
        # add "Entering directory" lines, and its command-line variables reach us through the environment.
        caller = ("CI", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "STACK", "SLURM")
        env = {k: v for k, v in os.environ.items() if k not in caller}
        return subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True).stdout

    default = dry("test")
    notice = default.index("apt-get installs Slurm, munge and MariaDB")
    assert notice < default.index("scripts/run_pytest.py") and "To leave it out: make test SLURM=0." in default
    assert default.rstrip().endswith("scripts/run_pytest.py")  # the whole suite
    assert dry("test", "SLURM=0").rstrip().endswith('scripts/run_pytest.py -m "not slurm"')
    assert "rm -rf" in dry("distclean") and ".cache/mmd-audiocraft" in dry("distclean", "MMD_AUDIOCRAFT_CACHE=")


def test_documented_measure_defaults_are_the_codes():
    from mmd_audiocraft.apps.cli import build_parser

    measure = build_parser().parse_args(["measure", "--model", "M", "--data", "D"])
    assert f"(`--gap-seeds`, default {measure.gap_seeds})" in (ROOT / "docs" / "MEASURING.md").read_text()
