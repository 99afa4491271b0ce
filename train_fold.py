"""Fine-tune one fold: keeps the best checkpoint by the competition metric and writes its out-of-fold outputs.
On several GPUs or machines, start it with torchrun or accelerate launch (train.batch_size is then per process;
see the README, More GPUs and machines)."""

import sys

from foldnlp import cli


def main(argv=None) -> int:
    p = cli.parser(__doc__)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--fold", type=int, help="the fold to hold out for validation (0-based)")
    what.add_argument("--probe-batch-size", action="store_true",
                      help="train nothing: print the largest per-device train.batch_size that fits this machine's "
                           "memory for the config's longest windows (at most features.max_len), model, precision, "
                           "optimizer and gradient checkpointing, and the memory at it; on CUDA by trying training "
                           "steps, on CPU by a rule from the memory of steps at batch 1 and 2 (printed)")
    p.add_argument("--no-wandb", action="store_true", help="turn experiment tracking off (default: wandb offline)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain a fold from scratch: discards its finished outputs or its saved training state")
    p.add_argument("--resume", action="store_true",
                   help="continue an unfinished fold from its last saved training state (runtime.save_every_steps and "
                        "every evaluation); a finished fold is left as it is, a fold with no state starts afresh")

    def run(args) -> int:
        from foldnlp.artifacts import RunPaths
        from foldnlp.errors import InputError
        from foldnlp.steps.train_fold import train_fold  # heavy imports after --help

        overrides = args.overrides + (["tracking.wandb=disabled"] if args.no_wandb else [])
        cfg = cli.load_config(args.config, overrides)
        if args.probe_batch_size:
            return _probe(cfg)
        if args.overwrite and args.resume:
            raise InputError("--overwrite and --resume contradict each other: pick one")
        metrics = train_fold(cfg, args.fold, overwrite=args.overwrite, resume=args.resume, progress=not args.quiet)
        metric, fold_dir = metrics["metric"], RunPaths.of(cfg.output_dir, cfg.name).fold_dir(args.fold)
        cli.print_result(f"fold {args.fold}: best {metric} {metrics[metric]:.4f} at step {metrics['best_step']} "
                         f"({metrics['train_seconds']:.0f} s); outputs in {fold_dir}")
        return 0

    return cli.run(run, p, argv)


def _probe(cfg) -> int:
    from foldnlp.steps.probe_batch import probe_batch_size

    found = probe_batch_size(cfg)
    print("\n".join(found.report(cfg.train)))
    return 0 if found.batch_size else 1


if __name__ == "__main__":
    sys.exit(main())
