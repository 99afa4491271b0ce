"""python -m foldnlp.folds_parallel: train every fold of an experiment, several at once. Each fold is a
`train_fold.py --fold K` process of its own (under torchrun for a slot of several GPUs), its output in
<output_dir>/<name>/fold<K>/train.log; the console has one line per fold as it starts and as it finishes (with its
best score) or fails. When there are more folds than slots, the next fold starts in the first slot that comes free.
A fold that fails does not stop the others; the command then exits with status 1, naming it. Ctrl-C stops every
fold (each keeps its saved training state: run again with --resume). The run folder is the one train_fold.py
writes: infer.py and ensemble.py take it as usual."""

import sys

from foldnlp import cli
from foldnlp.folds_parallel.devices import parse_devices


def _parser():
    p = cli.parser(__doc__)
    p.prog = "python -m foldnlp.folds_parallel"
    p.add_argument("--devices", type=parse_devices, required=True, metavar="SPEC",
                   help="where folds train, one fold per slot at a time: GPU numbers separated by ',' for one fold "
                        "per GPU (0,1,2,3); GPUs joined by '+' for one fold per group, trained with DDP by torchrun, "
                        "one process per GPU (0+1,2+3); cpu:N for N folds at once on CPU (cpu alone: cpu:1). GPU "
                        "numbers are torch's cuda:K here, so under CUDA_VISIBLE_DEVICES they index its entries")
    p.add_argument("--folds", type=int, nargs="+", metavar="K",
                   help="the folds to train, queued in this order (default: every fold of folds.n_folds)")
    p.add_argument("--threads", type=cli.positive_int, metavar="N",
                   help="OMP_NUM_THREADS (torch's CPU threads) of every training process (default: the cores this "
                        "command may use divided by the processes that run at once, rounded down, at least 1)")
    p.add_argument("--no-wandb", action="store_true", help="turn experiment tracking off (default: wandb offline)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain every fold from scratch: discards their finished outputs or saved training states "
                        "(train_fold.py --overwrite)")
    p.add_argument("--resume", action="store_true",
                   help="keep finished folds as they are (checked first, as train_fold.py --resume checks them: "
                        "refused if trained with another config) and continue unfinished ones from their last "
                        "saved training state; without it or --overwrite, every fold must be new")
    p._option_string_actions["--quiet"].help = (
        "the folds run with --quiet: their logs hold warnings and errors only, no progress lines (the console lines "
        "stay)")
    return p


def main(argv=None) -> int:
    def run(args) -> int:
        from foldnlp.folds_parallel.scheduler import Interrupted
        from foldnlp.folds_parallel.train_folds import train_folds

        overrides = args.overrides + (["tracking.wandb=disabled"] if args.no_wandb else [])
        try:
            result = train_folds(args.config, overrides, args.devices, folds=args.folds, resume=args.resume,
                                 overwrite=args.overwrite, threads=args.threads, quiet=args.quiet)
        except (Interrupted, KeyboardInterrupt):
            print("interrupted: run the same command with --resume to go on (finished folds are kept, stopped ones "
                  "continue from their saved training state)", file=sys.stderr)
            return 130  # the shell's status for a Ctrl-C
        if result.failed:
            failed = ", ".join(map(str, result.failed))
            done = f"; fold(s) {', '.join(map(str, result.finished))} finished" if result.finished else ""
            print(f"error: fold(s) {failed} failed (see the lines above and their train.log){done}", file=sys.stderr)
            return 1
        print(f"{len(result.finished)} fold(s) finished in {result.seconds:.0f} s; outputs in {result.root}")
        return 0

    return cli.run(run, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
