"""Tables 1, 2 and 5: FAD (VGGish), KL (PaSST) and CLAP score of the LMs of grids mmd_musicgen and
mmd_musicgen_quantizers, computed by audiocraft's evaluate stage.

As audiocraft's musicgen_pretrained_32khz_eval grid evaluates its released LMs (a new XP with `continue_from` the
model, `execute_only=evaluate` and `solver/musicgen/evaluation=objective_eval`), each LM is evaluated by an XP
of its own: the LM's overrides, the profile's evaluation overrides (_profile.py: EVAL_PAPER, EVAL_CPU), then
`continue_from=//sig/<LM sig>` and `execute_only=evaluate` (audiocraft leaves execute_only out of signatures).
The LM sigs are computed from _paper's definitions, as the LM grids compute their codecs' sigs; an evaluation is
scheduled once its LM XP has finished, listed as waiting before (run the grid again later). Table 2's delay LM and
Table 5's RVQ LM are the same XP, evaluated once.

Before anything is scheduled, every evaluation's config goes through the solver's preflight for its metrics
(integration/preflight.check_generation_metrics): with a file or package that FAD, KL or CLAP needs missing,
`dora grid` stops with one line naming each (config key, where it looked, how to get it), and submits nothing.
"""
from ._chain import SIG_PREFIX, launch_when_finished, xp_of
from ._explorers import MMDEvalExplorer
from ._paper import DECODING_LMS, QUANTIZER_LMS, lm_jobs
from ._profile import current

EVALUATED_LMS = {**DECODING_LMS, **QUANTIZER_LMS}


def evaluation_overrides(lm: list) -> list:
    """The overrides of the evaluation of the LM launched with `lm` (in the current profile)."""
    return _evaluating(lm, xp_of(lm).sig)


def _evaluating(lm: list, lm_sig: str) -> list:
    return [*lm, current().evaluation, {"continue_from": SIG_PREFIX + lm_sig, "execute_only": "evaluate"}]


def preflight(overrides: list) -> None:
    """What the solver checks before it builds (the metrics' files and packages), on this evaluation's config;
    exits with the Dora main's one-line config error."""
    from mmd_audiocraft.integration.errors import ConfigError
    from mmd_audiocraft.integration.preflight import check_generation_metrics

    try:
        check_generation_metrics(xp_of(overrides).cfg)
    except ConfigError as exc:
        raise SystemExit(f"mmd_audiocraft: config error: {exc}") from None


@MMDEvalExplorer
def explorer(launcher):
    launcher.slurm_(**current().eval_slurm)
    jobs, seen = {}, set()
    for name, (_, overrides) in lm_jobs(EVALUATED_LMS).items():
        lm_xp = xp_of(overrides)
        if lm_xp.sig in seen:
            continue
        seen.add(lm_xp.sig)
        jobs[name] = (lm_xp, _evaluating(overrides, lm_xp.sig))
    for _, args in jobs.values():
        preflight(args)
    with launcher.job_array():
        launch_when_finished(launcher, jobs, "evaluation", "LM")
