"""Blend the folds of one or more experiments: prints the out-of-fold CV of the task's metric and writes
submission.csv."""

import sys

from foldnlp import cli


def main(argv=None) -> int:
    p = cli.parser(__doc__, with_config=False)
    p.add_argument("--experiments", nargs="+", type=cli.user_path,
                   help="run folders (outputs/<experiment>) to blend; each one's folds are averaged first "
                        "(default: outputs/default)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per experiment (default: equal)")
    p.add_argument("--test-csv", type=cli.user_path, help="default: the first experiment's data.test_csv")
    p.add_argument("--sample-submission", type=cli.user_path, help="default: sample_submission.csv beside the test CSV")
    p.add_argument("--out", type=cli.user_path, default="outputs/submission.csv", help="where to write the submission")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the first experiment's config for decoding, e.g. "
                        "--set qa.decode.max_answer_chars=60 (repeatable)")
    p.add_argument("--max-answer-chars", type=int,
                   help="QA: longest answer in characters (same as --set qa.decode.max_answer_chars=N; default: "
                        "from the config)")
    p.add_argument("--max-answer-words", type=int,
                   help="QA: longest answer in words (--set qa.decode.max_answer_words=N; default: from the config)")
    p.add_argument("--no-cv", action="store_true",
                   help="skip the out-of-fold CV report: blend test outputs without the OOF outputs or the training "
                        "CSV (the folds are still those whose training finished)")
    p.add_argument("--n-best", type=int,
                   help="QA: candidate answers per question written to <out>.nbest.csv (--set qa.decode.n_best=N; "
                        "default: from the config; 1 writes none)")
    p.add_argument("--allow-mixed-folds", action="store_true",
                   help="blend anyway (with a warning) when experiments were trained on different fold files or data, "
                        "or their out-of-fold outputs miss folds; the CV then covers only ids every experiment has")

    def run(args) -> int:
        from foldnlp.steps.ensemble import ensemble

        flags = [f"qa.decode.{key}={value}" for key, value in (("max_answer_chars", args.max_answer_chars),
                                                               ("max_answer_words", args.max_answer_words),
                                                               ("n_best", args.n_best)) if value is not None]
        experiments = args.experiments or [cli.user_path("outputs/default")]
        report = ensemble(experiments, weights=args.weights, test_csv=args.test_csv, sample_csv=args.sample_submission,
                          out=args.out, overrides=args.overrides + flags, score_oof=not args.no_cv,
                          allow_mixed_folds=args.allow_mixed_folds)
        print(report)
        print(f"wrote {args.out}")
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
