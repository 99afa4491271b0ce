"""python -m foldnlp.kaggle build | local-run | budget: an offline Kaggle submission from trained experiments."""

import argparse
import sys

from foldnlp import cli


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m foldnlp.kaggle", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=description, description=description, epilog=cli.PATHS_NOTE,
                                  formatter_class=cli.HelpFormatter)
        sub.add_argument("--quiet", action="store_true", help="only warnings and errors")
        return sub

    def features(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--doc-stride", type=int,
                         help="tokens shared by consecutive windows, for every experiment (default: each fold's "
                              "training value; smaller = fewer windows)")
        sub.add_argument("--max-context-words", type=int,
                         help="QA: keep only the first N words of each context (--set qa.max_context_words=N)")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="a setting of every fold's config for inference in the kernel, as infer.py --set "
                              "(e.g. features.max_len=384, or the task's truncation such as qa.max_context_words=N); "
                              "repeatable")

    b = command("build", "Write the code, weights and wheels datasets and the kernel to --out, and print how to push "
                         "them.")
    b.add_argument("--experiments", nargs="+", type=cli.user_path, required=True,
                   help="run folders (outputs/<experiment>) whose trained folds are blended")
    b.add_argument("--competition", required=True, help="competition slug, as in its URL")
    b.add_argument("--user", required=True, help="your Kaggle username: owner of the datasets and the kernel")
    b.add_argument("--name", help="kernel slug and dataset prefix (default: foldnlp-<experiment names>)")
    b.add_argument("--out", type=cli.user_path,
                   help="bundle folder (default: kernels/<name>): new, empty, or an earlier bundle (replaced whole)")
    b.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True,
                   help="run the kernel on a GPU (fp16 autocast); --no-gpu for a CPU session")
    b.add_argument("--kaggle-has", nargs="*", metavar="PKG",
                   help="packages the Kaggle image already has: no wheels are shipped for them or for what only "
                        "they need (default: torch with --gpu, since the image's CUDA build must stay; none "
                        "with --no-gpu)")
    b.add_argument("--requirements", type=cli.user_path, default="requirements.txt",
                   help="pinned requirements; the inference packages among them are shipped")
    b.add_argument("--python-version", default="3.11", help="Python of the Kaggle image (wheels are built for it)")
    b.add_argument("--license", dest="license_name", default="CC0-1.0",
                   help="dataset license name (datasets are created private)")
    b.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast precision in the kernel (auto: bf16 on GPUs of compute capability 8.0+, fp16 on "
                        "older ones such as Kaggle's T4 and P100, bf16 on CPUs that have it)")
    b.add_argument("--batch-size", type=cli.positive_int, help="windows per forward pass (default: each run's config)")
    b.add_argument("--weights", type=float, nargs="+", help="blend weight per experiment (default: equal)")
    b.add_argument("--decoding", type=cli.user_path, metavar="JSON",
                   help="decoding settings ensemble.py fit on the out-of-fold blend (the submission.decoding.json "
                        "beside its submission, e.g. regress.thresholds), applied to the kernel's blend")
    features(b)

    r = command("local-run", "Run a built kernel here with no network, in a fresh virtual environment that installs "
                             "only from the bundle's datasets, on a /kaggle-like tree under --workdir.")
    r.add_argument("--bundle", type=cli.user_path, required=True, help="the folder `build` wrote (kernels/<name>)")
    r.add_argument("--test-csv", type=cli.user_path, required=True,
                   help="stands in for the competition's test.csv (or its test/ folder of documents, for spans)")
    r.add_argument("--sample-submission", type=cli.user_path, help="default: sample_submission.csv beside the test CSV")
    r.add_argument("--workdir", type=cli.user_path, required=True,
                   help="scratch folder for input/, working/, venv/: new, empty, or one an earlier local run made "
                        "(it is replaced)")
    r.add_argument("--python", default=sys.executable,
                   help="interpreter that creates the fresh venv (default: the one running this command)")

    g = command("budget", "Estimate the kernel's inference time per experiment and in total against the time limit, "
                          "and the doc stride / context truncation that would fit.")
    g.add_argument("--experiments", nargs="+", type=cli.user_path, required=True,
                   help="run folders (outputs/<experiment>)")
    g.add_argument("--test-csv", type=cli.user_path, required=True, help="test CSV to count windows on")
    g.add_argument("--device", default="cpu", type=str.lower,
                   help="cpu or cuda: measured on this machine's CPU or GPU; a GPU kind (t4, p100, a100, or one in "
                        "--measured-gpus): each window's work at that kind's sustained rate, the one measured by "
                        "bench/gpu_check.sh when --measured-gpus has it, else an assumed one (printed as such)")
    g.add_argument("--measured-gpus", type=cli.user_path, default="bench/measured_gpus.json", metavar="JSON",
                   help="rates measured on GPUs, by kind (`--device cuda --record` writes it); a missing file is none")
    g.add_argument("--record", action="store_true",
                   help="with --device cuda: keep this GPU's achieved rate (fold 0 of the first experiment) in "
                        "--measured-gpus under its kind, for later --device KIND estimates")
    g.add_argument("--limit-hours", type=float, default=9.0, help="the competition's kernel time limit")
    g.add_argument("--expected-rows", type=int,
                   help="rows of the hidden test set, when the public test.csv is a small sample (windows are "
                        "scaled by expected rows / rows in --test-csv)")
    g.add_argument("--overhead-minutes", type=float, default=10.0,
                   help="fixed time for installing, loading folds and decoding")
    features(g)
    return p


def main(argv=None) -> int:
    def run(args) -> int:
        overrides = [f"{k}={v}" for k, v in (("features.doc_stride", getattr(args, "doc_stride", None)),
                                             ("qa.max_context_words", getattr(args, "max_context_words", None)))
                     if v is not None] + getattr(args, "overrides", [])
        if args.command == "build":
            return _build(args, overrides)
        if args.command == "local-run":
            return _local_run(args)
        from foldnlp.kaggle import measured_gpus
        from foldnlp.kaggle.budget import plan

        print(plan(args.experiments, args.test_csv, device=args.device, limit_hours=args.limit_hours,
                   expected_rows=args.expected_rows, overhead_minutes=args.overhead_minutes,
                   overrides=overrides, measured=measured_gpus.read(args.measured_gpus),
                   record=args.measured_gpus if args.record else None))
        return 0

    return cli.run(run, _parser(), argv)


def _build(args, overrides: list[str]) -> int:
    from foldnlp.kaggle.bundle import Options, build_bundle, default_name, image_packages

    if args.decoding is not None:  # before the --set values, so that a --set still overrides a fitted value
        overrides = decoding_overrides(args.decoding) + overrides
    name = args.name or default_name(args.experiments)
    out = args.out or cli.user_path(f"kernels/{name}")
    options = Options(competition=args.competition, user=args.user, name=name, gpu=args.gpu, kaggle_has=args.kaggle_has,
                      requirements=args.requirements, python_version=args.python_version,
                      license_name=args.license_name, precision=args.precision, batch_size=args.batch_size,
                      overrides=overrides, blend_weights=args.weights)
    summary = build_bundle(args.experiments, out, options)
    print(f"bundle {out} ({'GPU' if args.gpu else 'CPU'} kernel; left to the Kaggle image: "
          f"{', '.join(image_packages(options)) or 'nothing'}):")
    for item in summary:
        print(f"  {item.label:<40} {item.files:>4} files {item.bytes / 1e6:>10.1f} MB   {item.folder}")
    datasets = [item.folder for item in summary[:-1]]
    print("push (the weights dataset has folders: --dir-mode zip uploads them; later versions: "
          "`kaggle datasets version -p FOLDER -m MESSAGE` with the same flags):")
    for folder in datasets:
        zip_mode = " --dir-mode zip" if any(p.is_dir() for p in folder.iterdir()) else ""
        print(f"  kaggle datasets create -p {folder}{zip_mode}")
    print(f"  kaggle kernels push -p {summary[-1].folder}")
    return 0


def decoding_overrides(path) -> list[str]:
    """KEY=VALUE settings from a decoding JSON written by ensemble.py ({"regress.thresholds": [[...]], ...})."""
    import json

    from foldnlp.errors import InputError

    try:
        fitted = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"--decoding {path}: not a readable JSON file ({err})") from err
    if not isinstance(fitted, dict):
        raise InputError(f"--decoding {path}: expected an object of settings, as ensemble.py writes")
    return [f"{key}={json.dumps(value)}" for key, value in fitted.items()]


def _local_run(args) -> int:
    from foldnlp.kaggle.localrun import run_kernel_locally

    sample = args.sample_submission or args.test_csv.with_name("sample_submission.csv")
    result = run_kernel_locally(args.bundle, args.test_csv, sample, args.workdir, python=args.python)
    print(result.log[-3000:] if not args.quiet else "", end="")
    print(f"network: {result.isolation}; a connection to pypi.org: {result.network_probe}")
    print(f"kernel wall time {result.seconds:.1f} s (fresh venv install + inference); wrote {result.submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
