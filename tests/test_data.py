import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from foldnlp.errors import InputError
from foldnlp.tables import check_ids_match_sample
from foldnlp.tasks.qa.data import (
    QA_TEST_COLUMNS,
    QA_TRAIN_COLUMNS,
    read_qa_csv,
    read_sample_submission,
    read_squad_json,
)
from helpers import FIXTURES, ROOT

INPUT = ROOT / "input"

CONTEXT = "Paris is the capital of France. Paris has the Louvre."


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_row(**overrides) -> dict:
    row = {"id": "q1", "context": CONTEXT, "question": "Capital of France?", "answer_text": "Paris",
           "answer_start": "0", "language": "english"}
    return {**row, **overrides}


# --- bundled data and real competition files ---------------------------------------------------------------

def test_bundled_train_reads_with_exact_answer_spans():
    train = read_qa_csv(INPUT / "train.csv", with_answers=True)
    assert len(train) == 786
    assert tuple(train.columns) == QA_TRAIN_COLUMNS
    assert set(train["language"]) == {"hindi"}
    assert train["answer_start"].dtype == "int64"
    spans = [c[s: s + len(a)] for c, s, a in zip(train["context"], train["answer_start"], train["answer_text"])]
    assert spans == train["answer_text"].tolist()


def test_bundled_test_matches_sample_submission_and_shares_no_context_with_train():
    train = read_qa_csv(INPUT / "train.csv", with_answers=True)
    test = read_qa_csv(INPUT / "test.csv", with_answers=False)
    sample = read_sample_submission(INPUT / "sample_submission.csv")
    answers = pd.read_csv(INPUT / "test_answers.csv", dtype=str)
    assert len(test) == 139 and tuple(test.columns) == QA_TEST_COLUMNS
    check_ids_match_sample(test, sample, INPUT / "test.csv", INPUT / "sample_submission.csv")
    assert (sample["PredictionString"] == "").all()
    assert answers["id"].tolist() == test["id"].tolist()
    assert not set(train["context"]) & set(test["context"])
    assert not set(train["id"]) & set(test["id"])


def test_bundled_english_external_is_parallel_to_hindi():
    english = read_squad_json(INPUT / "external" / "xquad.en.json", "english")
    hindi_ids = set(read_qa_csv(INPUT / "train.csv", with_answers=True)["id"])
    hindi_ids |= set(read_qa_csv(INPUT / "test.csv", with_answers=False)["id"])
    assert len(english) == 925
    assert set(english["language"]) == {"english"}
    assert set(english["id"]) == hindi_ids


def test_chaii_fixture_keeps_string_ids_and_multiline_text():
    test = read_qa_csv(FIXTURES / "chaii_test.csv", with_answers=False)
    sample = read_sample_submission(FIXTURES / "chaii_sample_submission.csv")
    assert test["id"].tolist() == ["22bff3dec", "282758170", "d60987e0e", "f99c770dc", "40dec1964"]
    assert test["language"].tolist() == ["hindi", "hindi", "hindi", "tamil", "tamil"]
    assert test["context"].str.contains("\n").any()
    check_ids_match_sample(test, sample, "chaii_test.csv", "chaii_sample_submission.csv")


def test_numeric_looking_ids_and_texts_are_not_parsed(tmp_path):
    path = write_csv(tmp_path / "train.csv", [train_row(id="0123"), train_row(id="1e5", question="NA")])
    frame = read_qa_csv(path, with_answers=True)
    assert frame["id"].tolist() == ["0123", "1e5"]
    assert frame["question"].tolist() == ["Capital of France?", "NA"]


def test_extra_columns_are_kept_after_required_ones(tmp_path):
    row = {"notes": "x", **train_row()}
    frame = read_qa_csv(write_csv(tmp_path / "train.csv", [row]), with_answers=True)
    assert list(frame.columns) == [*QA_TRAIN_COLUMNS, "notes"]
    assert isinstance(frame.index, pd.RangeIndex)


# --- SQuAD-style JSON --------------------------------------------------------------------------------------

def squad_document() -> dict:
    qas = [
        {"id": "a1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0},
                                                          {"text": "Paris is", "answer_start": 0}]},
        {"id": "a2", "question": "Museum?", "answers": [{"text": "Louvre", "answer_start": 46}]},
        {"id": "a3", "question": "Mayor?", "answers": [], "is_impossible": True},
        {"id": "a4", "question": "King?", "answers": []},
    ]
    return {"version": "v2.0", "data": [{"title": "Paris", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}


def test_read_squad_json_takes_first_answer_and_skips_unanswerable(tmp_path, caplog):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad_document()), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="foldnlp.tasks.qa.data"):
        frame = read_squad_json(path, "english")
    assert tuple(frame.columns) == QA_TRAIN_COLUMNS
    assert frame["id"].tolist() == ["a1", "a2"]
    assert frame["answer_text"].tolist() == ["Paris", "Louvre"]
    assert frame["answer_start"].tolist() == [0, 46]
    assert set(frame["language"]) == {"english"}
    assert "skipped 2 unanswerable" in caplog.text


def test_read_squad_json_rejects_wrong_structure(tmp_path):
    path = tmp_path / "bad.json"
    qa = {"id": "a1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]}
    path.write_text(json.dumps({"data": [{"title": "x", "paragraphs": [{"qas": [qa]}]}]}), encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json: not SQuAD-style JSON \(KeyError: 'context'\)"):
        read_squad_json(path, "english")


# --- bad inputs ----------------------------------------------------------------------------------------------

def test_missing_file_names_path(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: cannot read file"):
        read_qa_csv(tmp_path / "nope.csv", with_answers=False)


def test_missing_column_names_it_and_lists_found_columns(tmp_path):
    row = train_row()
    del row["answer_start"]
    path = write_csv(tmp_path / "train.csv", [row])
    with pytest.raises(InputError) as err:
        read_qa_csv(path, with_answers=True)
    message = str(err.value)
    assert "train.csv" in message
    assert "missing required column(s) answer_start" in message
    assert "found columns: id, context, question, answer_text, language" in message


@pytest.mark.parametrize("column", ["context", "question"])
@pytest.mark.parametrize("value", ["", "   "])
def test_empty_context_or_question_names_row_and_id(tmp_path, column, value):
    rows = [train_row(id="ok"), train_row(id="bad1", **{column: value}), train_row(id="ok2")]
    path = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(InputError) as err:
        read_qa_csv(path, with_answers=True)
    assert str(err.value) == f"{path}: column '{column}' is empty in 1 row(s): row 2 (id bad1)"


def test_nan_language_and_missing_id_are_rejected(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("id,context,question,language\nx1,ctx,q,hindi\n,ctx,q,tamil\nx3,ctx,q\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"test\.csv: column 'id' is empty in 1 row\(s\): row 2$"):
        read_qa_csv(path, with_answers=False)
    path.write_text("id,context,question,language\nx1,ctx,q,hindi\nx3,ctx,q\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"column 'language' is empty in 1 row\(s\): row 2 \(id x3\)"):
        read_qa_csv(path, with_answers=False)


def test_duplicate_ids_list_id_and_rows(tmp_path):
    rows = [train_row(id="a"), train_row(id="b"), train_row(id="a"), train_row(id="c")]
    path = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(InputError, match=r"train\.csv: column 'id' has 1 duplicated id\(s\): id a at rows 1, 3"):
        read_qa_csv(path, with_answers=True)


@pytest.mark.parametrize("value", ["abc", "1.5", "-3", ""])
def test_non_integer_answer_start_names_row_id_and_value(tmp_path, value):
    path = write_csv(tmp_path / "train.csv", [train_row(), train_row(id="q2", answer_start=value)])
    with pytest.raises(InputError) as err:
        read_qa_csv(path, with_answers=True)
    message = str(err.value)
    assert message.startswith(f"{path}: column 'answer_start' must be a non-negative integer")
    assert f"row 2 (id q2) value {value!r}" in message


def test_wrong_answer_start_is_repaired_to_nearest_occurrence(tmp_path, caplog):
    # "Paris" occurs at 0 and 32; 30 is nearest to 32, 5 is nearest to 0, 40 is beyond the answer.
    rows = [train_row(id="r1", answer_start="30"), train_row(id="r2", answer_start="5"),
            train_row(id="r3", answer_start="32"), train_row(id="r4", answer_start="400")]
    path = write_csv(tmp_path / "train.csv", rows)
    with caplog.at_level(logging.WARNING, logger="foldnlp.tasks.qa.data"):
        frame = read_qa_csv(path, with_answers=True)
    assert frame["answer_start"].tolist() == [32, 0, 32, 32]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "repaired answer_start in 3 row(s)" in warnings[0].getMessage()
    assert "r1, r2, r4" in warnings[0].getMessage()


def test_answer_not_in_context_names_rows_and_ids(tmp_path):
    rows = [train_row(), train_row(id="gone", answer_text="Berlin"), train_row(id="q3")]
    path = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(InputError) as err:
        read_qa_csv(path, with_answers=True)
    assert str(err.value) == (f"{path}: column 'answer_text' does not occur in the context in 1 row(s): "
                              "row 2 (id gone)")


def test_non_utf8_file_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,context,question,language\nx1,café,q,hindi\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.csv: not UTF-8 \(byte 0xe9 on line 2\)"):
        read_qa_csv(path, with_answers=False)


def test_test_ids_differing_from_sample_submission_are_listed(tmp_path):
    test = pd.DataFrame({"id": ["a", "b", "c"]})
    sample = pd.DataFrame({"id": ["a", "c", "z"], "PredictionString": ["", "", ""]})
    with pytest.raises(InputError) as err:
        check_ids_match_sample(test, sample, "test.csv", "sample_submission.csv")
    message = str(err.value)
    assert message.startswith("test.csv and sample_submission.csv must list the same ids")
    assert "1 id(s) of test.csv missing from sample_submission.csv: b" in message
    assert "1 id(s) in sample_submission.csv not in test.csv: z" in message
