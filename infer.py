"""Predict the test set with every trained fold of an experiment; writes per-fold scores and predictions."""

import sys

from foldnlp import cli


def main(argv=None) -> int:
    p = cli.parser(
        __doc__ + " They go to <run folder>/test/<key>/ with a settings.json that records what made them (the test "
        "file and its sha256, window settings, precision, folds); <key> is the test file's stem and a hash of the "
        "settings that change the scores, so predicting again with other settings or another test file keeps the "
        "earlier outputs, and ensemble.py blends the most recent ones made from its test file. Window settings "
        "default to those the folds were trained with; --set changes the folds' saved configs for inference (and, "
        "without --run-dir, the config whose output_dir and name find the run folder). On several GPUs, start it with "
        "torchrun or accelerate launch: the processes share the test set (see the README, More GPUs and machines).")
    p.add_argument("--run-dir", type=cli.user_path,
                   help="the trained run folder to predict with (default: <output_dir>/<name> of --config, which "
                        "is then not read)")
    p.add_argument("--out-dir", type=cli.user_path,
                   help="write the test outputs to OUT_DIR/test/<key>/ instead of into the run folder (someone "
                        "else's run, a read-only copy); OUT_DIR/run.json records the run folder, and "
                        "`ensemble.py --experiments OUT_DIR` blends them")
    p.add_argument("--test-csv", type=cli.user_path,
                   help="test file (QA: a CSV of id, context, question, language; classification and regression: id "
                        "and the text column); default: the config's data.test_csv")
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
                   help="windows per forward pass (default: the config's inference.batch_size; does not change the "
                        "scores)")
    p.add_argument("--chunk-chars", type=cli.positive_int,
                   help="predict the test set in chunks of about this many context characters, streamed to disk "
                        "(bounds memory, does not change the scores; default: the config's inference.chunk_chars)")

    def run(args) -> int:
        from foldnlp.artifacts import RunPaths
        from foldnlp.steps.infer import infer

        flags = [f"{key}={value}" for key, value in (("features.doc_stride", args.doc_stride),
                                                     ("features.max_len", args.max_len),
                                                     ("qa.max_context_words", args.max_context_words))
                 if value is not None]
        if args.run_dir is not None:
            run_dir = args.run_dir
        else:
            cfg = cli.config_from(args)
            run_dir = RunPaths.of(cfg.output_dir, cfg.name).root
        record = infer(run_dir, folds=args.folds, test_csv=args.test_csv, sample_csv=args.sample_submission,
                       overrides=args.overrides + flags, batch_size=args.batch_size, precision=args.precision,
                       chunk_chars=args.chunk_chars, progress=not args.quiet, out_dir=args.out_dir)
        test_flag = f" --test-csv {args.test_csv}" if args.test_csv else ""
        cli.print_result(f"wrote test outputs to {record.home.test_dir(record.key)}/\n  {record.describe()}\n"
                         f"blend: python ensemble.py --experiments {record.home.root}{test_flag}   (its most recent "
                         f"outputs made from {record.test_csv}; {record.label} names these)")
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
