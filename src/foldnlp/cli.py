"""Plumbing shared by the root CLIs: the common flags, logging set-up, and user errors → exit status 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from foldnlp import progress
from foldnlp.config import ExperimentConfig, load_config
from foldnlp.errors import InputError
from foldnlp.processes import launch_rank


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' only where X says something: not for None, False or an empty list."""

    def _get_help_string(self, action):
        if action.default in (None, False, []) or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def user_path(text: str) -> Path:
    """argparse type of every path flag: the path resolved against the directory the command was run in, once,
    when the command line is read. A relative path kept as it is would change meaning in any code that runs with
    another working directory (the local Kaggle kernel runs in its working/ folder). Paths inside a config file are
    not touched: the config (and its provenance hash) must mean the same on every machine and checkout."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def positive_int(text: str) -> int:
    """argparse type of counts that must be at least 1 (batch sizes, chunk sizes): refused with the usage line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


PATHS_NOTE = "Relative paths, on the command line and in a config, are taken from the directory the command runs in."


def parser(description: str, *, with_config: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, epilog=PATHS_NOTE, formatter_class=HelpFormatter)
    if with_config:
        p.add_argument("--config", type=user_path, default="configs/default.yaml",
                       help="experiment YAML file; its output_dir and name decide the run folder "
                            "<output_dir>/<name>/ (output_dir defaults to outputs)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, typed, e.g. --set train.lr=3e-5 (repeatable; unknown keys fail)")
    p.add_argument("--quiet", action="store_true",
                   help="only warnings and errors, no progress (otherwise a bar in a terminal, a plain line at every "
                        "tenth when the output is a file or a pipe)")
    return p


def config_from(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, args.overrides)


def run(main: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser, argv=None) -> int:
    """Parse argv, set up logging, run main(args); a user error is printed in one line and exits with status 2.

    In a launch of several processes (torchrun, accelerate launch) process 0 tells the story; the others log
    warnings only, marked with their rank, and leave the user errors (the same on every process) to it."""
    args = p.parse_args(argv)
    rank = launch_rank()
    if args.quiet or not progress.is_interactive() or rank != 0:
        progress.quiet_library_bars()
    logging.basicConfig(level=logging.WARNING if args.quiet or rank != 0 else logging.INFO,
                        format=f"%(asctime)s {f'rank {rank} ' if rank else ''}%(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    try:
        return main(args)
    except InputError as err:
        if rank == 0:
            print(f"error: {err}", file=sys.stderr)
        return 2


def print_result(text: str) -> None:
    """Print a command's closing lines (what it made, where): once, by process 0 of a launch."""
    if launch_rank() == 0:
        print(text)
