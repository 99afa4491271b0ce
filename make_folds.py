"""Write stratified, grouped cross-validation folds: folds/<scheme>.csv with columns id, fold."""

import sys

from foldnlp import cli
from foldnlp.steps.make_folds import make_folds


def main(argv=None) -> int:
    p = cli.parser(__doc__ + " Settings come from the config's folds section (n_folds, seed, stratify_by, group_by).")

    def run(args) -> int:
        cfg = cli.config_from(args)
        path, summary = make_folds(cfg)
        print(f"wrote {path} ({cfg.folds.n_folds} folds of {cfg.data.train_csv}, seed {cfg.folds.seed})\n{summary}")
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
