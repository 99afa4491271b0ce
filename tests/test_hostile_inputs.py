"""The hostile-input catalogue: every kind of bad input either stops the CLI with exit status 2 and this exact
message, or is repaired as documented (README "Bad input"). CLIs run in-process through their main(argv)."""

import importlib.util
import logging
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from foldnlp import artifacts
from foldnlp.config import load_config, to_dict
from foldnlp.errors import InputError
from foldnlp.modeling import load_tokenizer
from foldnlp.steps.infer import infer
from foldnlp.tasks import get_task
from foldnlp.tasks.qa.charscores import window_logits_to_char_scores
from foldnlp.tasks.qa.data import read_qa_csv
from foldnlp.tasks.qa.decoding import decode_all
from helpers import FIXTURES, ROOT

CONTEXT = "Paris is the capital of France. Paris has the Louvre."
HINDI = "भारत की राजधानी नई दिल्ली है। दिल्ली यमुना नदी के किनारे बसी है।"


def main_of(script: str):
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_cli(script: str, argv: list[str], capsys) -> tuple[int, str]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main_of(script)(["--quiet", *map(str, argv)])
    finally:  # the CLI points logging at capsys' stream, which closes after the test
        root.handlers[:], root.level = handlers, level
    return code, capsys.readouterr().err.strip()


def rows(n: int = 6, **overrides) -> list[dict]:
    """n valid training rows (two languages, three contexts) with one field overridden in the first row."""
    base = [{"id": f"q{i}", "context": CONTEXT if i % 2 else HINDI, "question": f"question {i}?",
             "answer_text": "Paris" if i % 2 else "दिल्ली", "answer_start": "0" if i % 2 else str(HINDI.find("दिल्ली")),
             "language": "english" if i % 2 else "hindi"} for i in range(n)]
    base[0].update(overrides)
    return base


def write(path: Path, table: list[dict] | pd.DataFrame) -> Path:
    pd.DataFrame(table).to_csv(path, index=False)
    return path


def make_folds(csv: Path, tmp: Path, capsys, *extra) -> tuple[int, str]:
    return run_cli("make_folds.py", ["--set", f"data.train_csv={csv}", "--set", f"folds.folds_dir={tmp / 'folds'}",
                                     "--set", "folds.n_folds=2", *extra], capsys)


# --- 1-10: the training CSV, through make_folds.py (exit 2 and the exact message) ----------------------------

def test_01_non_utf8_csv(tmp_path, capsys):
    path = tmp_path / "train.csv"
    path.write_bytes("id,context\n1,caf\xe9\n".encode("latin-1"))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: not UTF-8 (byte 0xe9 on line 2); re-save the file with UTF-8 encoding")


def test_02_unreadable_file(tmp_path, capsys):
    folder = tmp_path / "train.csv"
    folder.mkdir()
    assert make_folds(folder, tmp_path, capsys) == (2, f"error: {folder}: cannot read file (Is a directory)")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert make_folds(empty, tmp_path, capsys) == (
        2, f"error: {empty}: not a readable CSV file (No columns to parse from file)")


def test_03_missing_column(tmp_path, capsys):
    path = write(tmp_path / "train.csv", pd.DataFrame(rows()).drop(columns="language"))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: missing required column(s) language; found columns: id, context, question, answer_text, "
           "answer_start")


def test_04_renamed_columns_are_pointed_out(tmp_path, capsys):
    path = write(tmp_path / "train.csv", pd.DataFrame(rows()).rename(columns={"answer_text": "Answer_Text",
                                                                                "context": "Context"}))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: missing required column(s) context, answer_text (renamed? found 'Context' for 'context', "
           "'Answer_Text' for 'answer_text'; names are case-sensitive); found columns: id, Context, question, "
           "Answer_Text, answer_start, language")


def test_05_extra_columns_are_kept_after_the_required_ones(tmp_path):
    path = write(tmp_path / "train.csv", pd.DataFrame(rows()).assign(kfold="3", source="wiki"))
    frame = read_qa_csv(path, with_answers=True)
    assert list(frame.columns)[-2:] == ["kfold", "source"] and len(frame) == 6


@pytest.mark.parametrize("value", ["", "   "])
def test_06_empty_field(tmp_path, capsys, value):
    path = write(tmp_path / "train.csv", rows(question=value))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: column 'question' is empty in 1 row(s): row 1 (id q0)")


def test_06b_nan_field(tmp_path, capsys):
    path = tmp_path / "train.csv"
    path.write_text(pd.DataFrame(rows()).to_csv(index=False).replace(",hindi\n", ",\n", 1))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: column 'language' is empty in 1 row(s): row 1 (id q0)")


def test_07_duplicate_ids(tmp_path, capsys):
    path = write(tmp_path / "train.csv", rows(id="q3"))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: column 'id' has 1 duplicated id(s): id q3 at rows 1, 4")


def test_08_answer_start_out_of_range_or_off_is_repaired(tmp_path, caplog):
    table = rows()
    table[0]["answer_start"] = "99999"  # past the end of the context
    table[1]["answer_start"] = "3"  # off by 3 characters
    frame = read_qa_csv(write(tmp_path / "train.csv", table), with_answers=True)
    assert frame["answer_start"].tolist()[:2] == [HINDI.rfind("दिल्ली"), 0]  # the occurrences nearest to them
    assert "repaired answer_start in 2 row(s) to the nearest occurrence of answer_text (ids: q0, q1)" in caplog.text


def test_08b_negative_answer_start(tmp_path, capsys):
    path = write(tmp_path / "train.csv", rows(answer_start="-4"))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: column 'answer_start' must be a non-negative integer; bad in 1 row(s): "
           "row 1 (id q0) value '-4'")


def test_09_answer_not_in_context(tmp_path, capsys):
    path = write(tmp_path / "train.csv", rows(answer_text="Mumbai"))
    assert make_folds(path, tmp_path, capsys) == (
        2, f"error: {path}: column 'answer_text' does not occur in the context in 1 row(s): row 1 (id q0)")


def test_10_nfd_answer_in_nfc_context_takes_the_context_spelling(tmp_path, caplog):
    word = "ऩई"  # U+0929: NFC keeps it composed, NFD splits it into न + nukta
    context = f"यह {word} दिल्ली है"
    nfd = unicodedata.normalize("NFD", word)
    assert nfd != word
    frame = read_qa_csv(write(tmp_path / "train.csv", rows(context=context, answer_text=nfd, answer_start="0")),
                        with_answers=True)
    assert frame.loc[0, "answer_text"] == word and frame.loc[0, "answer_start"] == context.find(word)
    assert "differs from the context only in Unicode normalisation or zero-width characters in 1 row(s)" in caplog.text


def test_11_zero_width_and_control_characters(tmp_path, caplog):
    context = "क्\u200dष\u200cत्र\u00ad में \x07 सुरक्षा \u200b है"  # ZWJ, ZWNJ, soft hyphen, BEL, ZWSP
    table = rows(context=context, answer_text="क्षत्र", answer_start="0")  # answer typed without them
    frame = read_qa_csv(write(tmp_path / "train.csv", table), with_answers=True)
    assert frame.loc[0, "answer_text"] == "क्\u200dष\u200cत्र" and frame.loc[0, "answer_start"] == 0


def test_11b_zero_width_and_control_characters_flow_through_features_and_decoding(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    contexts = ["\ufeffक्\u200dष\u200cत्र\x00 में \x07\x1b सुरक्षा\u200b है\r\n\t।", "\u200b\u200c\u200d"]
    frame = pd.DataFrame({"id": ["a", "b"], "context": contexts, "question": ["क्या?", "?"]})
    cfg = load_config(None, ["features.max_len=32", "features.doc_stride=8"])
    features = get_task(cfg).windows(tokenizer, frame, with_targets=False)
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=len(ids)).astype(np.float32) for ids in features.input_ids]
    scores = window_logits_to_char_scores(frame["id"].to_numpy(), [len(c) for c in contexts], features.example_index,
                                          features.context_offsets, logits, logits)
    assert np.diff(scores.offsets).tolist() == [len(c) for c in contexts]
    for answer, context in zip(decode_all(contexts, scores, max_answer_chars=30), contexts):
        assert answer in context


# --- 12-14: sizes and settings --------------------------------------------------------------------------------

def test_12_question_longer_than_max_len_is_cut_to_max_question_tokens(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    frame = pd.DataFrame({"id": ["a"], "context": [HINDI * 3], "question": ["दिल्ली कहाँ है " * 200]})
    cfg = load_config(None, ["features.max_len=64", "features.doc_stride=16", "qa.max_question_tokens=24"])
    features = get_task(cfg).windows(tokenizer, frame, with_targets=False)
    assert len(features) > 1 and max(len(ids) for ids in features.input_ids) <= 64


def test_13_doc_stride_that_cannot_fit(tmp_path, capsys, tiny_model_dir):
    code, err = run_cli("train_fold.py", ["--fold", "0", "--set", "features.max_len=64",
                                          "--set", "features.doc_stride=64"], capsys)
    assert (code, err) == (2, "error: features.doc_stride (64) must be >= 0 and below features.max_len (64)")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    frame = pd.DataFrame({"id": ["a"], "context": [HINDI], "question": ["दिल्ली कहाँ है " * 20]})
    cfg = load_config(None, ["features.max_len=64", "features.doc_stride=40", "qa.max_question_tokens=40"])
    with pytest.raises(InputError, match=r"features.doc_stride=40 cannot work with features.max_len=64: the longest "
                                        r"question takes 40 tokens, leaving 21 for context; choose doc_stride < 21"):
        get_task(cfg).windows(tokenizer, frame, with_targets=False)


def test_14_config_with_wrong_type_or_unknown_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  lr: fast\n")
    assert run_cli("make_folds.py", ["--config", bad], capsys) == (
        2, f"error: {bad}.train.lr: expected float, got 'fast'")
    bad.write_text("name: x\ntrain:\n  epoch: 3\n")
    code, err = run_cli("make_folds.py", ["--config", bad], capsys)
    assert code == 2 and err.startswith(f"error: {bad}.train: unknown key(s) epoch; valid keys: adam_beta1, ")


# --- 15-18: run folders, checkpoints and test sets, through infer.py ----------------------------------------

@pytest.fixture()
def fake_run(tmp_path, tiny_model_dir) -> tuple[Path, list[str]]:
    """A run folder whose fold 0 'checkpoint' is the tiny untrained model (enough for inference)."""
    cfg = load_config(None, [f"output_dir={tmp_path / 'outputs'}", "name=fake", f"model.name_or_path={tiny_model_dir}",
                             "features.max_len=64", "features.doc_stride=16"])
    paths = artifacts.RunPaths.of(cfg.output_dir, cfg.name)
    shutil.copytree(tiny_model_dir, paths.model_dir(0))
    text = yaml.safe_dump(to_dict(cfg))
    (paths.model_dir(0) / artifacts.CONFIG_BESIDE_WEIGHTS).write_text(text)
    paths.config.write_text(text)
    paths.metrics(0).write_text("{}")
    argv = ["--set", f"output_dir={cfg.output_dir}", "--set", "name=fake", "--test-csv", FIXTURES / "chaii_test.csv",
            "--sample-submission", FIXTURES / "chaii_sample_submission.csv"]
    return paths.root, argv


def test_15_checkpoint_folder_missing_a_file(fake_run, capsys):
    root, argv = fake_run
    (root / "fold0" / "model" / "tokenizer.json").unlink()
    assert run_cli("infer.py", argv, capsys) == (
        2, f"error: checkpoint {root / 'fold0' / 'model'} is missing tokenizer.json: copy the whole folder again or "
           "retrain the fold with --overwrite")


def test_16_pickled_checkpoint_is_refused(fake_run, capsys):
    root, argv = fake_run
    model = root / "fold0" / "model"
    torch.save({"weights": torch.zeros(2)}, model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    assert run_cli("infer.py", argv, capsys) == (
        2, f"error: refusing to load pickled weights {model / 'pytorch_model.bin'}: only safetensors are loaded "
           "(unpickling can run code). Convert once, in a process you trust: "
           "AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")
    with pytest.raises(InputError, match="refusing to load pickled weights"):
        # the same check guards every model folder, pretrained ones included
        get_task(load_config(None)).load_model(str(model))


def test_17_test_ids_differ_from_sample_submission(fake_run, tmp_path, capsys):
    root, argv = fake_run
    sample = pd.read_csv(FIXTURES / "chaii_sample_submission.csv", dtype=str).iloc[1:]
    bad = tmp_path / "sample_submission.csv"
    sample.to_csv(bad, index=False)
    argv[argv.index("--sample-submission") + 1] = bad
    test_ids = pd.read_csv(FIXTURES / "chaii_test.csv", dtype=str)["id"]
    assert run_cli("infer.py", argv, capsys) == (
        2, f"error: {FIXTURES / 'chaii_test.csv'} and {bad} must list the same ids: 1 id(s) of "
           f"{FIXTURES / 'chaii_test.csv'} missing from {bad}: {test_ids.iloc[0]}")


def test_18_contexts_of_200k_characters_work_in_bounded_chunks(fake_run, tmp_path):
    root, _ = fake_run
    long_context = (HINDI + " ") * 3300  # ≈ 210k characters
    test = pd.DataFrame({"id": ["long", "short"], "context": [long_context, HINDI],
                         "question": ["नदी कौन सी है?", "राजधानी?"], "language": ["hindi", "hindi"]})
    test.to_csv(tmp_path / "test.csv", index=False)
    test[["id"]].assign(PredictionString="").to_csv(tmp_path / "sample_submission.csv", index=False)
    record = infer(root, folds=None, test_csv=str(tmp_path / "test.csv"), sample_csv=None, chunk_chars=50_000,
                   progress=False)
    scores = artifacts.load_scores(record.home.test_scores(record.key, 0))
    assert len(long_context) > 200_000 and np.diff(scores.offsets).tolist() == [len(long_context), len(HINDI)]
    assert np.isfinite(scores.values.astype(np.float32)).all()
    predictions = pd.read_csv(record.home.test_predictions(record.key, 0), dtype=str, keep_default_na=False)
    assert all(p in c for p, c in zip(predictions["prediction"], test["context"]))
