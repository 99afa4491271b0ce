"""python -m foldnlp.search: hyper-parameter search with Optuna. Each trial draws settings from the space file, applies
them to the config (as --set would) and trains the chosen folds with train_fold.py's code in a run folder of its
own, <output_dir>/<name>-t<k>/; evaluations during training report to a pruner that stops poor trials early. At the
end it prints the best trials and writes the best settings as <output_dir>/<name>/best.yaml."""

import argparse
import sys

from foldnlp import cli


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.prog = "python -m foldnlp.search"
    p.add_argument("--space", type=cli.user_path, required=True,
                   help="YAML file mapping config keys to {low, high[, log, int, step]} or {choices: [...]} "
                        "(see configs/search/space_qa.yaml); another space file makes another study")
    p.add_argument("--trials", type=cli.positive_int, required=True,
                   help="trials in the study in total: the complete, pruned and running trials of earlier runs of this "
                        "command and of other workers count, so running the same command again resumes the search "
                        "and workers sharing a study stop together at N (failed trials do not count)")
    p.add_argument("--folds", type=int, nargs="+", metavar="K",
                   help="folds each trial trains; a trial's value is the mean of their best scores (default: every "
                        "fold of folds.n_folds); e.g. --folds 0 for a quick search")
    p.add_argument("--storage", metavar="URL",
                   help="database URL of the study, e.g. postgresql://user:password@host/db: run the same command "
                        "on several machines against it to share one study (workers on one machine can share the "
                        "default SQLite file; default: SQLite in <output_dir>/<name>/search.db)")
    p.add_argument("--sampler", choices=["tpe", "random"], default="tpe",
                   help="how settings are drawn: tpe (random for the first 5 trials, then Optuna's TPE model of the "
                        "results) or random")
    p.add_argument("--pruner", choices=["median", "none"], default="median",
                   help="median: stop a trial whose best score so far is worse than the median of completed trials "
                        "at the same evaluation (from its 2nd evaluation, once 3 trials completed); none: never stop")
    p.add_argument("--seed", type=int,
                   help="the sampler's seed, for repeatable draws (default: a fresh one); workers sharing a study "
                        "need different seeds, or they draw the same settings")
    p.add_argument("--no-wandb", action="store_true", help="turn experiment tracking off (default: the config's)")
    return p


def main(argv=None) -> int:
    def run(args) -> int:
        from foldnlp.search.study import run_search  # heavy imports after --help

        overrides = args.overrides + (["tracking.wandb=disabled"] if args.no_wandb else [])
        try:
            result = run_search(args.config, args.space, args.trials, folds=args.folds, storage=args.storage,
                                overrides=overrides, sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                                progress=not args.quiet)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume the search (the interrupted trial continues "
                  "from its saved training state)", file=sys.stderr)
            return 130  # the shell's status for a Ctrl-C
        print(result.summary)
        return 0

    return cli.run(run, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
