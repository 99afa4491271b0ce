"""Predict the test set with every trained fold of an experiment; writes per-fold scores and predictions."""

import sys

from foldnlp import cli


def main(argv=None) -> int:
    p = cli.parser(__doc__ + " Window settings default to those the folds were trained with; --set changes the "
                             "experiment's config (its name and output_dir find the run folder).")
    p.add_argument("--test-csv", type=cli.user_path,
                   help="test file (QA: a CSV of id, context, question, language); default: the config's data.test_csv")
    p.add_argument("--sample-submission", type=cli.user_path,
                   help="default: sample_submission.csv beside the test CSV")
    p.add_argument("--folds", type=int, nargs="+", help="folds to run (default: every trained fold)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision (default: the config's inference.precision; auto = fp16 on CUDA, "
                        "bf16 on CPUs that have it, else fp32)")
    p.add_argument("--doc-stride", type=int,
                   help="tokens shared by consecutive windows (features.doc_stride; smaller = fewer windows)")
    p.add_argument("--max-len", type=int, help="tokens per window (features.max_len)")
    p.add_argument("--max-context-words", type=int,
                   help="QA: keep only the first N words of each context (the fold's qa.max_context_words)")
    p.add_argument("--batch-size", type=cli.positive_int,
                   help="windows per forward pass (default: the config's inference.batch_size)")
    p.add_argument("--chunk-chars", type=cli.positive_int,
                   help="predict the test set in chunks of about this many context characters, streamed to disk "
                        "(bounds memory; default: the config's inference.chunk_chars)")

    def run(args) -> int:
        from foldnlp.artifacts import RunPaths
        from foldnlp.steps.infer import infer

        cfg = cli.config_from(args)
        overrides = [f"{key}={value}" for key, value in (("features.doc_stride", args.doc_stride),
                                                         ("features.max_len", args.max_len),
                                                         ("qa.max_context_words", args.max_context_words))
                     if value is not None]
        run = RunPaths.of(cfg.output_dir, cfg.name)
        folds = infer(run.root, folds=args.folds, test_csv=args.test_csv, sample_csv=args.sample_submission,
                      overrides=overrides, batch_size=args.batch_size, precision=args.precision,
                      chunk_chars=args.chunk_chars, progress=not args.quiet)
        print(f"test outputs of folds {folds} written to {run.test_scores(folds[0]).parent}")
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
