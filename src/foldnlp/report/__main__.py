"""python -m foldnlp.report RUN [RUN ...]: a leaderboard of experiments (run folders), one row each (the CV
recomputed from the out-of-fold scores, per fold, spread, per group, training time, windows per second, the
settings that differ), printed and written to <out-dir>/leaderboard.md and .csv, with PNG plots: every fold's
validation curve, the training loss, the out-of-fold score by the task's bucket and, with --lb, CV against the
public board."""

import logging
import sys

from foldnlp import cli

log = logging.getLogger("foldnlp.report")

PLOTS = {"validation": "validation curves", "train_loss": "training loss", "buckets": "score by bucket",
         "cv_vs_public": "CV against the public board"}


def main(argv=None) -> int:
    p = cli.parser(__doc__, with_config=False)
    p.prog = "python -m foldnlp.report"
    p.add_argument("experiments", nargs="+", type=cli.user_path, metavar="RUN",
                   help="run folders (outputs/<experiment>), e.g. outputs/*: files among them (outputs/submission.csv) "
                        "and run folders without a finished fold are skipped; any other folder that is not a run "
                        "folder is an error")
    p.add_argument("--out-dir", type=cli.user_path, default="reports",
                   help="where leaderboard.md, leaderboard.csv and the PNG plots are written (created if missing)")
    p.add_argument("--lb", type=cli.user_path, metavar="CSV",
                   help="public-board scores: a CSV with columns submission, experiments (the run folders blended, "
                        "space-separated, each among RUN) and public_score; adds each submission's CV (equal-weight "
                        "blend of its experiments) against its public score, as a table and a scatter plot")

    def run(args) -> int:
        from foldnlp import artifacts, progress
        from foldnlp.report import experiments, leaderboard, plots

        folders = experiments.run_folders(args.experiments)
        board = experiments.read_public_board(args.lb) if args.lb else None  # a bad file fails before any work
        summaries = []
        with progress.Progress(len(folders), "report", "experiment", enabled=not args.quiet) as bar:
            for folder in folders:
                e = experiments.summarize(folder)
                summaries.append(e)
                log.info("%s: %s, folds %s, CV %s %.4f%s", folder, e.task, [f.fold for f in e.folds], e.metric, e.cv,
                         f" (partial: {e.scored} of {e.n_train} training examples)" if e.partial else "")
                bar.update(1)
        tables = leaderboard.build_tables(summaries)
        public = leaderboard.public_board_points(board, tables, experiments.blend_cv) if board is not None else {}
        drawn = {}
        for t in tables:
            suffix = "" if len(tables) == 1 else f"-{t.number}"
            files = {name: f"{name}{suffix}.png" for name in PLOTS}
            plots.validation_curves(t.experiments, args.out_dir / files["validation"])
            plots.training_loss(t.experiments, args.out_dir / files["train_loss"])
            if any(e.buckets is not None for e in t.experiments):
                plots.bucket_scores(t.experiments, args.out_dir / files["buckets"])
            else:
                del files["buckets"]
            if t.number in public:
                plots.cv_against_public(public[t.number], t.first.metric, args.out_dir / files["cv_vs_public"])
            else:
                del files["cv_vs_public"]
            drawn[t.number] = {PLOTS[name]: file for name, file in files.items()}
        text = leaderboard.markdown(tables, public, drawn)
        artifacts.atomic_write_text(args.out_dir / "leaderboard.md", text)
        artifacts.atomic_write_csv(args.out_dir / "leaderboard.csv", leaderboard.leaderboard_frame(tables))
        print(text)
        print(f"wrote {args.out_dir / 'leaderboard.md'}, {args.out_dir / 'leaderboard.csv'} and "
              f"{sum(len(d) for d in drawn.values())} plots in {args.out_dir}")
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
