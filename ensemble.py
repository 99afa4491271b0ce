"""Blend the folds of one or more experiments: prints the out-of-fold CV of the task's metric for the blend and
each member (or fits the members' weights on it), what each post-processing rule is worth on it, and which test
outputs it blends, and writes submission.csv."""

import sys

from foldnlp import cli
from foldnlp.blend_weights import DEFAULT_ROUNDS


def main(argv=None) -> int:
    p = cli.parser(__doc__ + " There is no --config: a blend reads each run folder's own saved config.yaml (the "
                             "first one's task decodes the blend), which --set changes.", with_config=False)
    p.add_argument("--experiments", nargs="+", type=cli.user_path, metavar="RUN[@KEY]",
                   help="members to blend: run folders (outputs/<experiment>) or folders written by infer.py "
                        "--out-dir; each one's folds are averaged first. Each blends its most recent test outputs "
                        "made from --test-csv (same content, checked by sha256); RUN@KEY takes RUN/test/KEY/ instead, "
                        "so `outputs/a outputs/a@KEY` blends two inference settings of one run "
                        "(default: outputs/default)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per member (default: equal)")
    p.add_argument("--fit-weights", action="store_true",
                   help="fit the members' weights on their out-of-fold outputs (greedy forward selection with "
                        "replacement, maximising the task's metric of the blend), print each member alone, the "
                        "equal-weight and the fitted blend, and the honest estimate (each fold blended with weights "
                        "fit on the other folds); the fitted weights blend the test outputs and are written to "
                        "<out stem>.weights.json. Not with --weights or --no-cv")
    p.add_argument("--fit-rounds", type=cli.positive_int, default=DEFAULT_ROUNDS,
                   help="--fit-weights: members added to the greedy bag at most (weights are multiples of one over "
                        "the bag's size)")
    p.add_argument("--test-csv", type=cli.user_path,
                   help="the test file the submission is for; every member's test outputs must be made from it "
                        "(default: the first experiment's data.test_csv)")
    p.add_argument("--sample-submission", type=cli.user_path,
                   help="default: sample_submission.csv beside the test CSV")
    p.add_argument("--out", type=cli.user_path,
                   help="where to write the submission (default: submission.csv beside the first experiment's "
                        "folder, i.e. in its output_dir: outputs/submission.csv for outputs/default); QA also writes "
                        "<out stem>.nbest.csv, a regression scored by qwk <out stem>.decoding.json (the cut points "
                        "fit on the out-of-fold blend)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the first experiment's saved config for this blend: its task's "
                        "decoding settings (e.g. --set qa.decode.max_answer_chars=60, "
                        "qa.decode.postprocess.strip_punctuation=false, classify.submit=probability) or "
                        "the data it reads (data.*, "
                        "folds.*); others, such as window settings, are refused (repeatable)")
    p.add_argument("--max-answer-chars", type=int,
                   help="QA: longest answer in characters (same as --set qa.decode.max_answer_chars=N; default: "
                        "from the config)")
    p.add_argument("--max-answer-words", type=int,
                   help="QA: longest answer in words (--set qa.decode.max_answer_words=N; default: from the config)")
    p.add_argument("--no-cv", action="store_true",
                   help="skip the out-of-fold CV report (and the post-processing table): blend test outputs without "
                        "the OOF outputs or the training CSV (the folds are still those whose training finished)")
    p.add_argument("--n-best", type=int,
                   help="QA: candidate answers per question written to <out>.nbest.csv (--set qa.decode.n_best=N; "
                        "default: from the config; 1 writes none)")
    p.add_argument("--allow-mixed-folds", action="store_true",
                   help="blend anyway (with a warning) when experiments were trained on different fold files or data, "
                        "or their out-of-fold outputs miss folds; the CV then covers only ids every experiment has")

    def run(args) -> int:
        from pathlib import Path

        from foldnlp.steps.ensemble import default_out, ensemble

        flags = [f"qa.decode.{key}={value}" for key, value in (("max_answer_chars", args.max_answer_chars),
                                                               ("max_answer_words", args.max_answer_words),
                                                               ("n_best", args.n_best)) if value is not None]
        experiments = args.experiments or [cli.user_path("outputs/default")]
        out = Path(args.out) if args.out else default_out(experiments[0])
        report = ensemble(experiments, weights=args.weights, test_csv=args.test_csv,
                          sample_csv=args.sample_submission, out=out, overrides=args.overrides + flags,
                          score_oof=not args.no_cv, allow_mixed_folds=args.allow_mixed_folds,
                          fit_weights=args.fit_weights, fit_rounds=args.fit_rounds)
        print(report)
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
