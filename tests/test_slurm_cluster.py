"""The codec -> LM campaign through `dora grid` on a real one-node SLURM cluster (scripts/slurm_cluster.sh,
with slurmdbd accounting), at CPU scale (MMD_GRID_PROFILE=cpu): the same grid definitions as the paper's.

One campaign, observed step by step, then checked by the tests below:
1. the node is drained (a busy cluster, made deterministic) and `dora grid mmd_codec_decoding` submits the
   three codecs, which pend; one codec's folder holds a corrupt checkpoint, so that XP fails when it starts;
2. `dora grid mmd_musicgen` before the codecs finish: every LM listed as waiting, nothing submitted;
3. the node resumes; the monitored codec grid follows the jobs to COMPLETED / FAILED and exits by itself;
4. with the node drained again, `dora grid mmd_musicgen` submits the LMs whose codec finished (through
   `//sig/`), `dora grid mmd_musicgen -C unroll` cancels the queued flatten LM, the node resumes and the other
   LMs complete.
The cluster is started by the module fixture and stopped whatever happens (.ci/run also stops it on exit).
Runs on the default stack only (Makefile: `-m "not slurm"` elsewhere); needs root (daemons, apt-get).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, dora_env, finish, history, start_dora, user_dataset

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
# A directory and ports of its own: a cluster started by hand with the script's defaults is left alone.
CLUSTER_ENV = {"MMD_SLURM_DIR": os.environ.get("MMD_SLURM_TEST_DIR", "/tmp/mmd-slurm-test"),
               "MMD_SLURM_PORT": "16837", "MMD_SLURM_PARTITION": "cpu_q"}  # not audiocraft's default `debug`
GRID = ["--no_git_save"]  # the checkout under test need not be committed (audiocraft sets dora.git_save)
POLL = ["-i", "0.05"]     # monitored grids refresh every 3 s instead of 5 min
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SIG = re.compile(r"[0-9a-f]{8}")


def cluster(action: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(SCRIPT), action], env={**os.environ, **CLUSTER_ENV},
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and action != "status":
        raise AssertionError(f"slurm_cluster.sh {action} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def daemon_pids(run_dir: Path) -> dict[str, int]:
    """Daemon name -> pid, from the script's pid files (which `stop` removes)."""
    return {pidfile.stem: int(pidfile.read_text()) for pidfile in run_dir.glob("*.pid")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A fresh one-node cluster; yields the environment its commands need. Always stopped afterwards, also
    when pytest is interrupted or sent SIGTERM (made a KeyboardInterrupt, so teardown runs)."""
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM cluster needs root (apt-get, daemons): scripts/slurm_cluster.sh")
    state = Path(CLUSTER_ENV["MMD_SLURM_DIR"])
    cluster("stop")  # leftovers of an interrupted session, by their pid files
    shutil.rmtree(state, ignore_errors=True)
    timings, on_term = {}, signal.signal(signal.SIGTERM, interrupt)
    try:
        start = time.monotonic()
        cluster("install")
        timings["install_s"] = time.monotonic() - start
        start = time.monotonic()
        cluster("start")
        timings["start_s"] = time.monotonic() - start
        yield {"SLURM_CONF": str(state / "etc" / "slurm.conf"), "timings": timings}
    finally:
        try:
            pids, start = daemon_pids(state / "run"), time.monotonic()
            cluster("stop")
            timings["stop_s"] = time.monotonic() - start
        finally:
            signal.signal(signal.SIGTERM, on_term)
        print(f"slurm cluster timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        if left:
            raise RuntimeError(f"slurm daemons still running after stop: {left}")
        shutil.rmtree(state, ignore_errors=True)  # its state (about 180 MB), once nothing runs from it


def slurm_cmd(slurm: dict, *args: str) -> str:
    return subprocess.run(list(args), env={**os.environ, "SLURM_CONF": slurm["SLURM_CONF"]}, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def queue(slurm: dict) -> dict[str, str]:
    """Job id -> SLURM state of the jobs squeue lists (one line per job array task)."""
    lines = slurm_cmd(slurm, "squeue", "-h", "-r", "-o", "%i %T").split("\n")
    return dict(line.split() for line in lines if line.strip())


def accounting(slurm: dict) -> dict[str, tuple[str, str]]:
    """Job id -> (job name, state) of every job the accounting database has (sacct)."""
    out = slurm_cmd(slurm, "sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State,Elapsed")
    rows = [line.split("|") for line in out.strip().split("\n") if line]
    print("sacct (JobID, JobName, State, Elapsed):\n" + "\n".join(" ".join(r) for r in rows))
    return {job: (name, state.split()[0]) for job, name, state, *_ in rows}


def set_node(slurm: dict, state: str) -> None:
    node = slurm_cmd(slurm, "sinfo", "-h", "-N", "-o", "%N").split()[0]
    slurm_cmd(slurm, "scontrol", "update", f"nodename={node}", f"state={state}",
              *(["reason=test: queue jobs"] if state == "drain" else []))


def kill_tree(pid: int) -> None:
    """Kill a process and its descendants, by pid (a `dora grid` runs a pool of workers that would outlive it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = [pid], [pid]
    while todo:
        todo = [child for parent in todo for child in children.get(parent, [])]
        tree += todo
    for member in reversed(tree):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(predicate, what: str, timeout: float, runs=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for run in runs:
            if run.proc.poll() is not None:
                raise AssertionError(f"dora exited ({run.proc.returncode}) while waiting for {what}:\n"
                                     f"{run.log.read_text()[-6000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out ({timeout} s) waiting for {what}")
        time.sleep(1)


def tables(output: str) -> list[dict[str, str]]:
    """Each grid table printed in a `dora grid` output, as {sig: state (3 letters)}."""
    found, current = [], None
    for line in ANSI.sub("", output).split("\n"):
        meta = line.split("|", 1)[0].split()
        if line.lstrip().startswith("i ") and "sig" in meta:
            current = {}
            found.append(current)
            continue
        sigs = [i for i, token in enumerate(meta) if SIG.fullmatch(token)]
        if current is not None and meta and meta[0].isdigit() and sigs:
            current[meta[sigs[-1]]] = meta[sigs[-1] - 1]
    return found


def monitor_shows(run, state: str, count: int) -> bool:
    """Whether the monitored `dora grid` has printed a table with at least `count` XPs in `state`: squeue lists a
    job before the monitor's next table does, and a test that reads the states a monitor printed must wait for
    them to be printed before it changes them (cancel, resume)."""
    found = tables(run.log.read_text())
    return bool(found) and sum(value == state for value in found[-1].values()) >= count


def last_table(output: str) -> str:
    lines = ANSI.sub("", output).split("\n")
    start = max(i for i, line in enumerate(lines) if line.startswith("Base name"))
    return "\n".join(line for line in lines[start:start + 4 + len(tables(output)[-1])])


def row(output: str, sig: str) -> str:
    """The last table row of XP `sig` in a `dora grid` output."""
    rows = [line for line in ANSI.sub("", output).split("\n") if f" {sig} " in line and "|" in line]
    assert rows, f"no table row for {sig}"
    return rows[-1]


def states_seen(output: str, sig: str) -> list[str]:
    """The successive states of XP `sig` in the tables of a monitored `dora grid` (repeats merged). A job
    submitted a moment ago may first read UNK: sacct has not heard of it yet; those are left out."""
    seen = []
    for table in tables(output):
        state = table.get(sig)
        if state is not None and not (state == "UNK" and not seen) and (not seen or seen[-1] != state):
            seen.append(state)
    return seen


def argv(dora_dir: Path, sig: str) -> list[str]:
    return json.loads((dora_dir / "xps" / sig / ".argv.json").read_text())


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def inputs(slurm, tmp_path_factory) -> dict:
    """The documented inputs of a user's campaign (docs/DATA.md, docs/CLUSTER.md): their dataset in a folder of
    their own, and audiocraft's team config naming their partition."""
    root = tmp_path_factory.mktemp("user")
    team = root / "team.yaml"
    team.write_text(f"default:\n  dora_dir: {root / 'unused'}\n  partitions:\n    global: cpu_q\n"
                    f"    team: cpu_q\n  reference_dir: {root}\n")
    return {"MMD_GRID_PROFILE": "cpu", "MMD_DATA": str(user_dataset(root / "music")), "AUDIOCRAFT_CONFIG": str(team),
            "SLURM_CONF": slurm["SLURM_CONF"], "root": root}


@pytest.fixture(scope="module")
def campaign(slurm, inputs, tiny_corpus, tmp_path_factory):
    dora_dir = tmp_path_factory.mktemp("slurm") / "dora"
    env = {k: v for k, v in inputs.items() if k != "root"}
    status_before = git_status()
    # A submission interrupted before its job id was saved: the next `dora grid` looks for its job with
    # `squeue -u os.getlogin()`, which raises OSError without a terminal unless our main handles it.
    (dora_dir / "orphans").mkdir(parents=True)
    (dora_dir / "orphans" / "mmd_audiocraft_0000dead").touch()
    out, runs, start = {"dora_dir": dora_dir}, [], time.monotonic()
    steps = {}  # seconds since the campaign started, at the end of each step

    def step(name: str) -> None:
        steps[name] = round(time.monotonic() - start)

    try:
        set_node(slurm, "drain")
        codecs = start_dora(["grid", "mmd_codec_decoding", *GRID, *POLL], dora_dir, tiny_corpus, env_extra=env)
        runs.append(codecs)
        wait_until(lambda: len(queue(slurm)) == 3, "3 codec jobs in the queue", 300, [codecs])
        wait_until(lambda: monitor_shows(codecs, "PEN", 3), "the codec grid's table of 3 pending jobs", 300, [codecs])
        out["queue_codecs"] = queue(slurm)
        step("codecs queued")
        (folder,) = (dora_dir / "grids").glob("mmd_codec_decoding@cpu-*")  # this setting's grid folder
        out["codec_sigs"] = sorted(p.name for p in folder.iterdir())
        (parallel,) = [s for s in out["codec_sigs"] if any("parallel" in a for a in argv(dora_dir, s))]
        (dora_dir / "xps" / parallel / "checkpoint.th").write_bytes(b"truncated")  # fails when it starts
        out["failing"] = parallel

        # another setting of the same grid (other data) while these pend: its own jobs, nothing of the first cancelled
        other = {**env, "MMD_DATA": str(user_dataset(inputs["root"] / "other_music"))}
        runs.append(start_dora(["grid", "mmd_codec_decoding", *GRID, "--no_monitoring"], dora_dir, tiny_corpus,
                               env_extra=other))
        out["other_setting"], queued = finish(runs[-1], timeout=600), queue(slurm)
        out["queue_other_setting"] = queued
        mine = {json.loads((dora_dir / "xps" / s / "job.json").read_text())["job_id"] for s in out["codec_sigs"]}
        out["other_jobs"] = [job for job in queued if job not in mine]  # the second setting's, cancelled here
        slurm_cmd(slurm, "scancel", *out["other_jobs"])
        wait_until(lambda: len(queue(slurm)) == 3, "the other setting's jobs gone", 120)
        step("other setting")

        runs.append(start_dora(["grid", "mmd_musicgen", *GRID, "--no_monitoring"], dora_dir, tiny_corpus,
                               env_extra=env))
        out["lm_before"], out["queue_lm_before"] = finish(runs[-1], timeout=600), queue(slurm)
        step("LM grid before")
        set_node(slurm, "resume")
        out["codecs"] = finish(codecs, timeout=600)
        step("codec grid exited")

        set_node(slurm, "drain")
        lms = start_dora(["grid", "mmd_musicgen", *GRID, *POLL], dora_dir, tiny_corpus, env_extra=env)
        runs.append(lms)
        wait_until(lambda: len(queue(slurm)) == 3, "3 LM jobs in the queue", 300, [lms])
        wait_until(lambda: monitor_shows(lms, "PEN", 3), "the LM grid's table of 3 pending jobs", 300, [lms])
        out["queue_lms"] = queue(slurm)
        step("LMs queued")
        runs.append(start_dora(["grid", "mmd_musicgen", "unroll", *GRID, "-C"], dora_dir, tiny_corpus,
                               env_extra=env))
        out["cancel"] = finish(runs[-1], timeout=600)
        step("flatten LM cancelled")
        set_node(slurm, "resume")
        out["lms"] = finish(lms, timeout=600)
        step("LM grid exited")
        evaluations = start_dora(["grid", "mmd_musicgen_eval", *GRID, *POLL], dora_dir, tiny_corpus, env_extra=env)
        runs.append(evaluations)
        out["evaluations"] = finish(evaluations, timeout=600)
        step("evaluation grid exited")
        out["accounting"] = accounting(slurm)
        out["partitions"] = sorted(set(slurm_cmd(slurm, "sacct", "-X", "-n", "-P", "-o", "Partition").split()))
    finally:
        for run in runs:  # our own dora processes and their workers, if a step above failed
            if run.proc.poll() is None:
                kill_tree(run.proc.pid)
                run.proc.wait()
    out["git_status"] = (status_before, git_status())
    print(f"\ncampaign steps (s since start): {steps}")
    for title, key in (("codec grid", "codecs"), ("LM grid before the codecs finish", "lm_before"),
                       ("LM grid", "lms")):
        print(f"{title}, last table:\n" + last_table(out[key]))
    return out


def test_dora_grid_survives_an_orphaned_submission_without_a_terminal(campaign):
    assert "Found dirty tag mmd_audiocraft_0000dead" in campaign["codecs"]
    assert not (campaign["dora_dir"] / "orphans" / "mmd_audiocraft_0000dead").exists()


def test_codec_jobs_go_from_pending_through_running_to_completed(campaign):
    assert set(campaign["queue_codecs"].values()) == {"PENDING"}  # drained node: all three queued
    done = [s for s in campaign["codec_sigs"] if s != campaign["failing"]]
    assert len(done) == 2
    for sig in done:
        assert states_seen(campaign["codecs"], sig) == ["PEN", "RUN", "COM"], sig
        assert (campaign["dora_dir"] / "xps" / sig / "checkpoint.th").exists()


def test_a_failing_xp_is_reported_failed_and_does_not_block_the_others(campaign):
    seen = states_seen(campaign["codecs"], campaign["failing"])
    assert seen[0] == "PEN" and seen[-1] == "FAI"
    codec_array = {job.split("_")[0] for job in campaign["queue_codecs"]}  # the codec grid's job array
    codec_jobs = {job: state for job, (_, state) in campaign["accounting"].items()
                  if job.split("_")[0] in codec_array}
    assert sorted(codec_jobs.values()) == ["COMPLETED", "COMPLETED", "FAILED"]  # sacct agrees with the table
    assert all(state in ("COM", "FAI") for state in tables(campaign["codecs"])[-1].values())  # the grid exited


def test_codec_table_shows_the_independence_metrics_each_xp_recorded(campaign):
    dora_dir = campaign["dora_dir"]
    losses = {}
    for sig in campaign["codec_sigs"]:
        if sig == campaign["failing"]:
            continue
        (epoch,) = history(dora_dir / "xps" / sig)
        line = row(campaign["codecs"], sig)
        assert f"{epoch['evaluate']['inde_heldout']:.2e}" in line
        assert f"{epoch['evaluate']['mi_rest_q3_bits']:.3f}" in line
        losses[sig] = float(next(a for a in argv(dora_dir, sig) if a.startswith("losses.inde=")).split("=")[1])
        if losses[sig] > 0:
            assert f"{epoch['train']['inde']:.2e}" in line
    assert sorted(losses.values()) == [0.0, 1000.0]  # the baseline and an MMD codec completed


def test_lms_wait_while_codecs_run_and_nothing_is_submitted(campaign):
    before = campaign["lm_before"]
    assert len(re.findall(r"Grid: LM \w+ \(\w+\) waits for codec", before)) == 4
    assert campaign["queue_lm_before"].keys() == campaign["queue_codecs"].keys()  # only the codec jobs
    assert "Scheduled job" not in before
    assert len(re.findall("waiting 0/1", ANSI.sub("", before).split("Monitoring Grid", 1)[1])) == 4


def lm_codecs(output: str) -> dict[str, str]:
    """LM sig -> the codec sig its table row names (`compression_model_checkpoint=//sig/SIG`)."""
    return {sig: re.search(r"//sig/([0-9a-f]{8})", row(output, sig)).group(1) for sig in tables(output)[-1]}


def flatten_lm(output: str) -> str:
    (sig,) = [sig for sig in tables(output)[-1] if "modeling=unroll" in row(output, sig).split("|")[0]]
    return sig


def test_lms_on_finished_codecs_are_submitted_through_sig_and_complete(campaign):
    dora_dir, lms = campaign["dora_dir"], campaign["lms"]
    table, codec_of = tables(lms)[-1], lm_codecs(lms)
    assert sorted(codec_of.values()) == sorted([*campaign["codec_sigs"], codec_of[flatten_lm(lms)]])
    (waiting,) = [sig for sig, codec in codec_of.items() if codec == campaign["failing"]]
    assert table[waiting] == "N/A" and not (dora_dir / "xps" / waiting / "job.json").exists()
    assert re.search(rf"LM \w+ \({waiting}\) waits for codec {campaign['failing']}: waiting 0/1", lms)
    completed = [sig for sig in table if sig not in (waiting, flatten_lm(lms))]
    assert len(completed) == 2
    for sig in completed:
        assert states_seen(lms, sig) == ["PEN", "RUN", "COM"], sig
        assert f'compression_model_checkpoint="//sig/{codec_of[sig]}"' in argv(dora_dir, sig)
        log = (dora_dir / "xps" / sig / "solver.log.0").read_text()
        assert f"Loading compression model from checkpoint: //sig/{codec_of[sig]}" in log
        assert (dora_dir / "xps" / sig / "checkpoint.th").exists()


def test_grid_cancel_cancels_the_queued_lm(campaign):
    dora_dir, lms = campaign["dora_dir"], campaign["lms"]
    assert set(campaign["queue_lms"].values()) == {"PENDING"}
    flatten = flatten_lm(lms)
    job = json.loads((dora_dir / "xps" / flatten / "job.json").read_text())["job_id"]
    assert re.search(rf"Canceling job {job} for sheep {flatten}", campaign["cancel"])
    assert len(re.findall("Canceling job", campaign["cancel"])) == 1  # only the queued flatten LM
    assert states_seen(lms, flatten) == ["PEN", "CAN"]
    assert campaign["accounting"][job][1] == "CANCELLED"
    assert not (dora_dir / "xps" / flatten / "history.json").exists()


def test_grid_clear_goes_through_where_slurm_takes_the_jobs(slurm, inputs, tiny_corpus, tmp_path):
    """The other side of tests/test_grid_clear.py: with a reachable cluster, `--clear` deletes and resubmits."""
    dora_dir = tmp_path / "dora"
    env = {"MMD_GRID_PROFILE": "cpu", "SLURM_CONF": slurm["SLURM_CONF"],
           "AUDIOCRAFT_CONFIG": inputs["AUDIOCRAFT_CONFIG"]}  # the cluster's partition
    finish(start_dora(["grid", "mmd_codec_decoding", "--dry_run", "--init"], dora_dir, tiny_corpus, env_extra=env))
    sigs = sorted(p.name for p in (dora_dir / "xps").iterdir())
    for sig in sigs:
        (dora_dir / "xps" / sig / "checkpoint.th").write_bytes(b"trained weights")
    set_node(slurm, "drain")  # the resubmitted jobs pend, and are cancelled below
    try:
        proc = subprocess.run([sys.executable, "-m", "dora", "-P", "mmd_audiocraft", "grid", "mmd_codec_decoding",
                               "--clear", "--no_monitoring", *GRID], input="y\n", cwd=tmp_path, timeout=600,
                              env=dora_env(dora_dir, tiny_corpus, **env), capture_output=True, text=True)
        jobs = queue(slurm)
    finally:
        if queue(slurm):
            slurm_cmd(slurm, "scancel", *queue(slurm))
        set_node(slurm, "resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Deleting XP folders" in proc.stdout + proc.stderr and "refused" not in proc.stderr
    assert len(jobs) == 3 and set(jobs.values()) == {"PENDING"}
    for sig in sigs:
        assert not (dora_dir / "xps" / sig / "checkpoint.th").exists()
        assert json.loads((dora_dir / "xps" / sig / "job.json").read_text())["job_id"] in jobs


def test_another_setting_of_the_grid_cancels_nothing_of_the_first(campaign):
    other = campaign["other_setting"]
    assert "Canceling" not in other and len(re.findall("Scheduled job", other)) >= 1
    assert len(campaign["queue_other_setting"]) == 6  # the first setting's 3 jobs still queued, and 3 of its own
    assert set(campaign["queue_other_setting"].values()) == {"PENDING"}
    for sig in campaign["codec_sigs"]:
        assert states_seen(campaign["codecs"], sig)[0] == "PEN" and "CAN" not in states_seen(campaign["codecs"], sig)


def test_the_users_campaign_runs_codec_lm_evaluation_on_their_data_and_partition_and_edits_nothing(campaign,
                                                                                                   inputs):
    dora_dir = campaign["dora_dir"]
    for sig in campaign["codec_sigs"]:
        argv_text = " ".join(argv(dora_dir, sig))
        assert f"datasource.train=\"{inputs['MMD_DATA']}/train\"" in argv_text  # their data, in the signature
    partitions = {p for entry in campaign["partitions"] for p in entry.split(",")}  # audiocraft: "team,global"
    assert campaign["accounting"] and partitions == {"cpu_q"}  # every job on the team config's partition
    (table,) = tables(campaign["evaluations"])[-1:]
    done = [sig for sig, state in table.items() if state == "COM"]
    assert len(done) >= 2  # the LMs that completed, each evaluated
    for sig in done:
        (epoch,) = history(dora_dir / "xps" / sig)
        assert "ce" in epoch["evaluate"] and "chroma_cosine" in epoch["evaluate"]
    before, after = campaign["git_status"]
    assert after == before  # no tracked file edited, nothing written into the checkout
