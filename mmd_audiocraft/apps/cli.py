"""The `mmd-audiocraft` command: argument parsing and error reporting only; the work is in `measure`,
`compare` and the grid check (integration/grid_check.py).

Expected mistakes (a wrong MODEL or data, bad options, unwritable outputs) end with one line on stderr and
exit code 2; anything else is a bug and keeps its traceback. Library log messages and warnings are hidden
unless --verbose.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmd-audiocraft",
        description="Tools of the independence-promoting MMD loss plugin for audiocraft.")
    parser.add_argument("--version", action="version", version=f"mmd-audiocraft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    m = sub.add_parser(
        "measure", help="measure how dependent a codec's codebooks are on a dataset",
        description="Encode every file of an audiocraft manifest in fixed segments and report codebook usage, "
                    "pairwise and each-vs-rest mutual information, total correlation (raw, shuffle-null, "
                    "corrected), the paper's protocol number and an MMD^2 estimate.")
    m.add_argument("--model", required=True,
                   help="checkpoint file or XP folder, //sig/SIG (Dora dir; AUDIOCRAFT_DORA_DIR honoured), or "
                        "//pretrained/NAME_OR_PATH (an exported model or folder, a transformers EnCodec folder "
                        "with config.json + model.safetensors, or a hub name when the hub is reachable)")
    m.add_argument("--reference", metavar="MODEL", default=None,
                   help="a second codec, in any form --model takes (e.g. the codec this one was fine-tuned from): "
                        "per codebook and joint, the fraction of codes identical to its codes of the same audio, "
                        "and both codecs' reconstruction (log-mel L1, SI-SNR). Same sample rate, channels, frame "
                        "rate, number of codebooks and cardinality as --model")
    m.add_argument("--stability", action="store_true",
                   help="encode, decode, encode again: per codebook and joint, the fraction of codes unchanged, "
                        "and the codec's reconstruction (log-mel L1, SI-SNR)")
    m.add_argument("--data", required=True, help="audiocraft manifest folder (data.jsonl[.gz]) or manifest file")
    m.add_argument("--max-frames", type=_positive_int, default=None,
                   help="stop after this many code tuples (default: all data)")
    m.add_argument("--pattern", choices=("delay", "parallel"), default="delay",
                   help="which codes form a tuple: the LM's delay pattern (default) or frame-aligned codes")
    m.add_argument("--json", metavar="OUT.json", default=None, help="write the full report as JSON")
    m.add_argument("--plot", metavar="OUT.png", default=None, help="bar chart of I(z_k; other codebooks)")
    m.add_argument("--batch-size", type=_positive_int, default=8, help="segments encoded together (default 8)")
    m.add_argument("--segment", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="segment length in seconds (default 10); tuples never span two segments")
    m.add_argument("--device", default="cpu", help="torch device (default cpu)")
    m.add_argument("--mmd-rows", type=int, default=4096,
                   help="tuples of codebook vectors sampled for the MMD estimate (default 4096; 0 skips it)")
    m.add_argument("--null-shuffles", type=int, default=3,
                   help="per-codebook shuffles averaged for the null baseline (default 3)")
    m.add_argument("--seed", type=int, default=0, help="seed of the shuffles, pairs and samples (default 0)")
    m.add_argument("--trust-checkpoint", action="store_true", default=None,
                   help="unpickle MODEL fully (torch.load weights_only=False): only for files you trust; torch "
                        ">= 2.6 needs it for audiocraft training checkpoints (//sig/ is trusted by default)")
    m.add_argument("--gap", action="store_true",
                   help="also estimate the factorization gap: bits per step the pattern's parallel prediction "
                        "loses (trains small predictors on the codes, split 3/1/1 by segment: minutes on CPU)")
    m.add_argument("--gap-seeds", type=_positive_int, default=3, metavar="N",
                   help="predictor seeds for the gap's spread (default 3, as every gap in the docs)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    m.add_argument("-v", "--verbose", action="store_true", help="show library logs and warnings")
    m.set_defaults(handler=_run_measure)

    c = sub.add_parser(
        "compare", help="compare codec XPs from what they logged (the paper's Figure 2 from your XPs)",
        description="One row per codec XP: the settings that differ, losses.inde, the last evaluate stage's "
                    "independence and reconstruction metrics, the MMD/reconstruction gradient ratio, the cached "
                    "factorization gap, the valid cross-entropy of LM XPs trained on the codec and what their "
                    "evaluation XPs logged (FAD, KL, CLAP, chroma cosine: the paper's Table 2). Nothing is "
                    "recomputed.")
    c.add_argument("inputs", nargs="+", metavar="XP",
                   help="XP folder, //sig/SIG (Dora dir; AUDIOCRAFT_DORA_DIR honoured) or grid name of "
                        "grids/ (its XPs; those that never ran are listed as not run)")
    c.add_argument("--json", metavar="OUT.json", default=None, help="write every row as JSON")
    c.add_argument("--plot", metavar="OUT.png", default=None,
                   help="PNG: independence and reconstruction against losses.inde when only the weight differs, "
                        "else reconstruction against independence")
    c.add_argument("-v", "--verbose", action="store_true", help="show library logs and warnings")
    c.set_defaults(handler=_run_compare)

    k = sub.add_parser(
        "check", help="check that a grid's jobs have what they need, before anything queues",
        description="What `dora grid NAME` checks before it submits (docs/CLUSTER.md), on demand: every manifest "
                    "exists and reads, its audio is not below the codec's sample rate and channels, the LM's text "
                    "conditioning (descriptions, T5 in the Hugging Face cache), the evaluation's downloads, the "
                    "partitions (sinfo), the Dora dir, the batch split over the GPUs. Reads the same environment "
                    "as the grids (MMD_GRID_PROFILE, MMD_DATA, ...). Exit 1 with one line per missing item.")
    k.add_argument("grid", help="a grid of grids/ (e.g. mmd_codec_decoding)")
    k.add_argument("-v", "--verbose", action="store_true", help="show library logs and warnings")
    k.set_defaults(handler=_run_check)
    return parser


def _run_check(args: argparse.Namespace) -> int:
    import importlib

    from ..integration.errors import ConfigError
    from ..integration.grid_check import format_problems, grid_problems
    from .compare import grid_names

    if args.grid not in grid_names():
        raise UserError(f"{args.grid}: not a grid of grids/ ({', '.join(grid_names())})")
    from ..train import main

    explorer = importlib.import_module(f"mmd_audiocraft.grids.{args.grid}").explorer
    try:
        problems = grid_problems(main, explorer)
        name = f"{args.grid}@{explorer.setting()}"
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if problems:
        print(format_problems(name, problems))
        return 1
    print(f"grid {name}: nothing missing; `dora -P mmd_audiocraft grid {args.grid}` can submit")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from .compare import compare, format_compare_table
    from .json_output import write_json

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UserError("--plot needs matplotlib (pip install 'mmd-audiocraft[plot]')")
    result = compare(args.inputs)
    print(format_compare_table(result), flush=True)
    if args.json:
        print(f"wrote {write_json(result, args.json)}", file=sys.stderr)
    if args.plot:
        from .compare_plot import plot_compare

        print(f"wrote {plot_compare(result, args.plot)}", file=sys.stderr)
    return 0


def _run_measure(args: argparse.Namespace) -> int:
    from ..core.metrics.factorization_gap import GapOptions
    from .json_output import write_json
    from .measure import measure
    from .measure_table import format_table

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UserError("--plot needs matplotlib (pip install 'mmd-audiocraft[plot]')")
    result = measure(args.model, args.data, pattern=args.pattern, max_frames=args.max_frames,
                     batch_size=args.batch_size, segment_seconds=args.segment, device=args.device,
                     mmd_rows=args.mmd_rows, null_shuffles=args.null_shuffles, seed=args.seed,
                     progress=False if args.no_progress else None, trust_checkpoint=args.trust_checkpoint,
                     gap=GapOptions(seeds=tuple(range(args.gap_seeds))) if args.gap else None,
                     reference=args.reference, stability=args.stability)
    print(format_table(result), flush=True)
    _cache_code_drift(result, write_json)
    if result.get("factorization_gap"):
        from ..integration import xps

        xp_dir = Path(str(result.get("model_source", ""))).parent
        if (xp_dir / xps.HISTORY_NAME).exists():  # an XP's checkpoint: cache the gap where `compare` reads it
            print(f"wrote {write_json(result['factorization_gap'], xps.gap_cache(xp_dir))}", file=sys.stderr)
    if args.json:
        print(f"wrote {write_json(result, args.json)}", file=sys.stderr)
    if args.plot:
        from ..core.metrics import plot_each_vs_rest

        path = plot_each_vs_rest(result, args.plot, labels=[args.model],
                                 title=f"I(z_k; other codebooks), {args.pattern} pattern, "
                                       f"{result['n_frames']} tuples")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _cache_code_drift(result: dict, write_json) -> None:
    """Code agreement and stability of an XP's checkpoint, cached in its folder where `compare` reads them."""
    from ..integration import xps

    xp_dir = Path(str(result.get("model_source", ""))).parent
    if not (xp_dir / xps.HISTORY_NAME).exists():
        return
    for key, name in xps.DRIFT_CACHE_NAMES.items():
        if result.get(key):
            print(f"wrote {write_json(result[key], xp_dir / name)}", file=sys.stderr)


class UserError(Exception):
    """A mistake in the command line that argparse cannot see."""


@contextlib.contextmanager
def _library_output(verbose: bool):
    """Route warnings to logging and show library logs only with --verbose; restore everything after."""
    root = logging.getLogger()
    level = root.level
    handler = None
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.setLevel(level)
        if handler is not None:
            root.removeHandler(handler)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ..integration.loaders import ModelLoadError
    from .compare import CompareInputError
    from .manifest import ManifestError

    # MeasureInputError is a ManifestError
    return (UserError, ManifestError, ModelLoadError, CompareInputError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _library_output(getattr(args, "verbose", False)):
        try:
            return args.handler(args)
        except _expected_errors() as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"mmd-audiocraft {args.command}: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"mmd-audiocraft {args.command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
