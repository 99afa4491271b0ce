"""Span data: whitespace words and their offsets, the Feedback Prize layout (essays + train.csv offsets) read into
(class, first_word, last_word) spans with every bad input named, predictionstrings both ways, word BIO labels and BIO
token files (IL-NER Hindi and its upstream quirks)."""

import logging
import re
import sys

import numpy as np
import pandas as pd
import pytest

from foldnlp.errors import InputError
from foldnlp.tables import read_text_csv
from foldnlp.tasks.spans.data import (
    bio_channels,
    bio_labels,
    classes_of,
    predictionstring,
    read_bio_file,
    read_feedback_test,
    read_feedback_train,
    spans_from_bio,
    spans_to_submission,
    submission_to_spans,
    words_with_offsets,
)
from helpers import FIXTURES

PERSUADE = FIXTURES / "persuade_one_essay"
FEEDBACK_TEST = FIXTURES / "feedback_prize_test"
FEEDBACK_TRAIN = FIXTURES / "feedback_prize_train_500"
IL_NER = FIXTURES / "il_ner_hindi_sample"

# The 12 discourse elements of PERSUADE essay A5DB60716E91 as word spans (checked against discourse_text below).
PERSUADE_SPANS = [("Lead", 2, 73), ("Claim", 74, 82), ("Claim", 84, 94), ("Position", 95, 116),
                  ("Evidence", 129, 281), ("Claim", 289, 297), ("Evidence", 298, 368), ("Evidence", 370, 477),
                  ("Claim", 478, 490), ("Concluding Statement", 491, 524), ("Counterclaim", 525, 542),
                  ("Rebuttal", 543, 550)]

ESSAYS = {"a1": "Dear reader,\n\nI think  phones\tare bad. They distract us.\n",
          "b2": "Short essay here.",
          "c3": "Nothing is labelled apart from this."}
A1, B2, C3 = ESSAYS["a1"], ESSAYS["b2"], ESSAYS["c3"]


def essay_rows():
    """(id, discourse_start, discourse_end, discourse_type): b2 first, so ids come back sorted; a1's Lead ends inside
    'reader,', its Position starts on the blank line before 'I', its Claim starts inside 'They'."""
    return [("b2", B2.index("essay"), len(B2), "Claim"),
            ("a1", 0, A1.index("reader") + 3, "Lead"),
            ("a1", A1.index("\n\nI"), A1.index(" They"), "Position"),
            ("a1", A1.index("hey"), len(A1), "Claim"),
            ("c3", 0, len(C3), "Evidence")]


def feedback_layout(tmp_path, rows=None, essays=None):
    """train.csv and train/<id>.txt under tmp_path, offsets written as Kaggle's file does ("229.0"); no
    discourse_type_num or predictionstring column. Returns the CSV's path."""
    (tmp_path / "train").mkdir(parents=True)
    for essay_id, text in (ESSAYS if essays is None else essays).items():
        (tmp_path / "train" / f"{essay_id}.txt").write_bytes(text.encode() if isinstance(text, str) else text)
    frame = pd.DataFrame(essay_rows() if rows is None else rows,
                         columns=["id", "discourse_start", "discourse_end", "discourse_type"])
    for column in ("discourse_start", "discourse_end"):
        frame[column] = frame[column].map(lambda v: f"{v}.0" if isinstance(v, int) else v)
    frame.insert(1, "discourse_id", [f"{1622627660524 + k}.0" for k in range(len(frame))])
    frame.to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "train.csv"


def raises_one_line(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_words_and_offsets_follow_str_split_on_any_whitespace():
    text = "  Hello,\tworld\n\nfoo   bar\r\n"
    words, offsets = words_with_offsets(text)
    assert words == ["Hello,", "world", "foo", "bar"] == text.split()
    assert offsets.dtype == np.int64 and offsets.tolist() == [[2, 8], [9, 14], [16, 19], [22, 25]]
    assert [text[a:b] for a, b in offsets] == words
    every_space = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert len(every_space) == 29
    text = "".join(f"w{k}{space}" for k, space in enumerate(every_space))
    assert words_with_offsets(text)[0] == text.split()
    words, offsets = words_with_offsets(" \n\t ")
    assert words == [] and offsets.shape == (0, 2)


def test_persuade_essay_offsets_to_words_to_spans_to_predictionstrings_and_back(tmp_path):
    train = read_feedback_train(PERSUADE / "train.csv")
    assert train["id"].tolist() == ["A5DB60716E91"] and len(train["text"].iat[0]) == 3101
    assert train["spans"].iat[0] == PERSUADE_SPANS
    words, _ = words_with_offsets(train["text"].iat[0])
    truth = pd.read_csv(PERSUADE / "train.csv", dtype=str)
    assert truth["discourse_type"].tolist() == [cls for cls, _, _ in PERSUADE_SPANS]  # the CSV is in essay order
    cut = 0
    for text, (_, a, b) in zip(truth["discourse_text"], PERSUADE_SPANS):
        span_words, written = words[a: b + 1], text.split()
        # A row ending inside a word ("citizens" of "citizens.") keeps the whole word.
        assert len(span_words) == len(written) and span_words[1:-1] == written[1:-1]
        assert span_words[0].endswith(written[0]) and span_words[-1].startswith(written[-1])
        cut += span_words != written
    assert cut == 5
    assert classes_of(train) == ["Claim", "Concluding Statement", "Counterclaim", "Evidence", "Lead", "Position",
                                 "Rebuttal"]

    submission = spans_to_submission(train["id"], train["spans"])
    assert submission.columns.tolist() == ["id", "class", "predictionstring"] and len(submission) == 12
    assert submission["predictionstring"].iat[0] == " ".join(str(k) for k in range(2, 74))
    assert submission["predictionstring"].iat[1] == "74 75 76 77 78 79 80 81 82"
    submission.to_csv(tmp_path / "submission.csv", index=False)
    assert submission_to_spans(read_text_csv(tmp_path / "submission.csv")) == {"A5DB60716E91": PERSUADE_SPANS}


def made_up_discourse_rows(essay_id: str, text: str, rng) -> tuple[list[tuple], list[tuple[str, int, int]]]:
    """Random non-overlapping word spans of one essay, with classes no Feedback Prize corpus has, written as
    train.csv rows the way the competition's are: discourse_start on the first word or on the whitespace before it,
    discourse_end at the end of the last word or inside it ("citizens" of "citizens."). Returns (rows, spans)."""
    words, offsets = words_with_offsets(text)
    rows, spans, word = [], [], int(rng.integers(0, 5))
    while word < len(words):
        last = min(len(words) - 1, word + int(rng.integers(0, 60)))
        start, end = int(offsets[word, 0]), int(offsets[last, 1])
        if start > 0 and text[start - 1].isspace() and rng.random() < 0.3:
            start -= 1
        if end - offsets[last, 0] > 1 and rng.random() < 0.3:
            end -= int(rng.integers(1, end - offsets[last, 0]))
        cls = str(rng.choice(["Hook", "Thesis", "Reason", "Example"]))
        rows.append((essay_id, f"{start}.0", f"{end}.0", text[start:end], cls))
        spans.append((cls, word, last))
        word = last + 1 + int(rng.integers(0, 12))
    return rows, spans


def test_500_real_essays_round_trip_offsets_words_spans_predictionstrings(tmp_path):
    """The 500 unlabelled Feedback Prize training essays (170 of them hold non-breaking spaces, which str.split()
    and hence the competition's word numbering treat as whitespace) given made-up discourse rows: offsets → words →
    spans → predictionstrings → spans, checked against the competition's own recipe for a predictionstring
    (words before discourse_start, plus the words of the discourse text)."""
    essays = read_feedback_test(FEEDBACK_TRAIN)
    assert len(essays) == 500 and essays["id"].is_monotonic_increasing
    assert sum("\xa0" in t for t in essays["text"]) == 170
    rng = np.random.default_rng(0)
    rows, expected = [], {}
    for essay_id, text in zip(essays["id"], essays["text"]):
        assert words_with_offsets(text)[0] == text.split()
        essay_rows_, expected[essay_id] = made_up_discourse_rows(essay_id, text, rng)
        rows += essay_rows_
    frame = pd.DataFrame(rows, columns=["id", "discourse_start", "discourse_end", "discourse_text", "discourse_type"])
    text_of = dict(zip(essays["id"], essays["text"]))
    ends = [(text_of[i], int(float(e))) for i, e in zip(frame["id"], frame["discourse_end"])]
    inside_a_word = sum(e < len(t) and not t[e].isspace() for t, e in ends)
    on_space = sum(t[0].isspace() for t in frame["discourse_text"])
    assert inside_a_word > 1000 and on_space > 1000  # both of the competition's quirks are exercised
    frame.sample(frac=1.0, random_state=0).to_csv(tmp_path / "train.csv", index=False)  # any row order
    train = read_feedback_train(tmp_path / "train.csv", texts_dir=FEEDBACK_TRAIN)
    assert train["id"].tolist() == essays["id"].tolist() and train["text"].tolist() == essays["text"].tolist()
    assert dict(zip(train["id"], train["spans"])) == expected
    assert classes_of(train) == ["Example", "Hook", "Reason", "Thesis"]

    submission = spans_to_submission(train["id"], train["spans"])
    assert len(submission) == len(frame) > 5000
    kaggle = {}
    for essay_id, start, end in zip(frame["id"], frame["discourse_start"], frame["discourse_end"]):
        text, start, end = text_of[essay_id], int(float(start)), int(float(end))
        first = len(text[:start].split())
        kaggle[(essay_id, first)] = " ".join(map(str, range(first, first + len(text[start:end].split()))))
    ours = {(i, int(p.split()[0])): p for i, p in zip(submission["id"], submission["predictionstring"])}
    assert ours == kaggle
    submission.to_csv(tmp_path / "submission.csv", index=False)
    back = submission_to_spans(read_text_csv(tmp_path / "submission.csv"))
    assert back == {i: s for i, s in expected.items() if s}


def test_hand_made_layout_reads_words_overlapping_each_discourse_row(tmp_path):
    train = read_feedback_train(feedback_layout(tmp_path))
    assert train.columns.tolist() == ["id", "text", "spans"]
    assert train["id"].tolist() == ["a1", "b2", "c3"] and train["text"].tolist() == [A1, B2, C3]
    # a1 words: Dear(0) reader,(1) I(2) think(3) phones(4) are(5) bad.(6) They(7) distract(8) us.(9)
    assert train["spans"].tolist() == [[("Lead", 0, 1), ("Position", 2, 6), ("Claim", 7, 9)],
                                       [("Claim", 1, 2)], [("Evidence", 0, 5)]]
    assert classes_of(train) == ["Claim", "Evidence", "Lead", "Position"]
    (tmp_path / "train").rename(tmp_path / "essays")
    elsewhere = read_feedback_train(tmp_path / "train.csv", texts_dir=tmp_path / "essays")
    assert elsewhere["spans"].tolist() == train["spans"].tolist()


@pytest.mark.parametrize("rows, message", [
    (essay_rows() + [("a1", A1.index("bad"), A1.index("distract") + 1, "Evidence")],
     "train.csv: 2 pair(s) of discourse rows overlap in words, which one label per word cannot hold: "
     "id a1: row 3 (discourse_id 1622627660526.0) and row 6 (discourse_id 1622627660529.0) share word 6, "
     "id a1: row 6 (discourse_id 1622627660529.0) and row 4 (discourse_id 1622627660527.0) share words 7-8"),
    (essay_rows() + [("b2", 0, len(B2) + 1, "Lead"), ("c3", 5, 5, "Lead"), ("c3", -1, 3, "Lead")],
     "train.csv: 3 discourse row(s) outside their essay (need 0 <= discourse_start < discourse_end <= essay length): "
     "row 6 (id b2) [0, 18) in 17 characters, row 7 (id c3) [5, 5) in 36 characters, "
     "row 8 (id c3) [-1, 3) in 36 characters"),
    (essay_rows() + [("a1", A1.index("\n\n"), A1.index("I think"), "Lead")],
     "train.csv: 1 discourse row(s) cover only whitespace, no word: row 6 (id a1)"),
    ([("b2", "12.5", 17, "Claim"), ("a1", "abc", 5, "Lead"), ("a1", "", 5, "Lead"), ("c3", 0, 36, "Lead")],
     "train.csv: column 'discourse_start' must hold whole character offsets; bad in 3 row(s): "
     "row 1 (id b2) value '12.5', row 2 (id a1) value 'abc', row 3 (id a1) value ''"),
    ([("a1", 0, 4, "Lead"), ("a1", 5, "9.5", "Claim")],
     "column 'discourse_end' must hold whole character offsets; bad in 1 row(s): row 2 (id a1) value '9.5'"),
])
def test_bad_training_layouts_are_named_in_one_line(tmp_path, rows, message):
    assert message in raises_one_line(read_feedback_train, feedback_layout(tmp_path, rows))


def test_missing_essays_and_folders_and_bad_encoding_are_named(tmp_path):
    train_csv = feedback_layout(tmp_path / "some", essays={"a1": A1})
    assert re.search(r"train\.csv: 2 essay file\(s\) missing from \S+/some/train: b2\.txt, c3\.txt$",
                     raises_one_line(read_feedback_train, train_csv))
    assert "essay folder " in raises_one_line(read_feedback_train, train_csv, texts_dir=tmp_path / "nowhere")
    latin = feedback_layout(tmp_path / "latin", essays={**ESSAYS, "b2": "Short\ncaf\xe9 here.".encode("latin-1")})
    assert re.search(r"b2\.txt: not UTF-8 \(byte 0xe9 on line 2\)", raises_one_line(read_feedback_train, latin))
    pd.DataFrame({"id": ["a1"], "discourse_start": [0], "discourse_end": [4]}).to_csv(train_csv, index=False)
    assert "missing required column(s) discourse_type" in raises_one_line(read_feedback_train, train_csv)


def test_feedback_test_folder_lists_its_essays_sorted_by_id(tmp_path):
    test = read_feedback_test(FEEDBACK_TEST)
    ids = ["0FB0700DAF44", "18409261F5C2", "D46BCB48440A", "D72CB1C11673", "DF920E0A7337"]
    assert test.columns.tolist() == ["id", "text"] and test["id"].tolist() == ids
    assert [len(t.split()) for t in test["text"]] == [635, 1056, 363, 421, 711]
    assert test["text"].iat[2].startswith("When people ask for advice,they sometimes talk to more than one person.")
    sample = read_text_csv(FEEDBACK_TEST / "sample_submission.csv")
    assert submission_to_spans(sample) == {i: [] for i in sample["id"]} and set(sample["id"]) == set(ids)
    assert raises_one_line(read_feedback_test, tmp_path) == f"{tmp_path}: no essays (<id>.txt files) in this folder"
    assert raises_one_line(read_feedback_test, tmp_path / "no") == f"{tmp_path / 'no'}: essay folder does not exist"


def test_predictionstrings_are_contiguous_word_runs():
    assert predictionstring(3, 5) == "3 4 5" and predictionstring(7, 7) == "7"
    with pytest.raises(ValueError):
        predictionstring(5, 3)
    submission = spans_to_submission(["a", "b", "c"], [[("Lead", 0, 2)], [], [("Claim", 4, 4), ("Lead", 1, 2)]])
    assert submission.values.tolist() == [["a", "Lead", "0 1 2"], ["c", "Claim", "4"], ["c", "Lead", "1 2"]]
    empty = spans_to_submission(["a"], [[]])
    assert empty.empty and empty.columns.tolist() == ["id", "class", "predictionstring"]
    frame = pd.DataFrame({"id": ["c", "c", "d"], "class": ["Claim", "Lead", ""],
                          "predictionstring": ["6 4 5", "1", ""]})
    assert submission_to_spans(frame) == {"c": [("Lead", 1, 1), ("Claim", 4, 6)], "d": []}


@pytest.mark.parametrize("cls, string, message", [
    ("Claim", "1 2 4", "submission: 1 row(s) have a non-contiguous predictionstring, which a (class, first_word, "
                       "last_word) span cannot hold: row 2 (id e)"),
    ("Claim", "3 3", "non-contiguous predictionstring"),
    ("Claim", "", "submission: 1 row(s) need a class and a predictionstring of word numbers (\"3 4 5\"), or neither: "
                  "row 2 (id e)"),
    ("", "1 2", "need a class and a predictionstring"),
    ("Claim", "1 x", "need a class and a predictionstring"),
    ("Claim", "-1 0", "need a class and a predictionstring"),
])
def test_submission_rows_a_span_cannot_hold_are_named(cls, string, message):
    frame = pd.DataFrame({"id": ["d", "e"], "class": ["Lead", cls], "predictionstring": ["0 1", string]})
    assert message in raises_one_line(submission_to_spans, frame)


def test_bio_labels_and_spans_round_trip():
    classes = ["Claim", "Lead"]
    assert bio_channels(classes) == ("O", "B-Claim", "I-Claim", "B-Lead", "I-Lead")
    spans = [("Lead", 0, 1), ("Claim", 3, 5), ("Claim", 6, 6)]
    labels = bio_labels(8, spans, classes)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 4, 0, 1, 2, 2, 1, 0]
    channels = bio_channels(classes)
    assert spans_from_bio([channels[k] for k in labels]) == spans
    train = read_feedback_train(PERSUADE / "train.csv")
    persuade_classes = classes_of(train)
    labels = bio_labels(len(train["text"].iat[0].split()), PERSUADE_SPANS, persuade_classes)
    assert labels.shape == (561,) and (labels == 0).sum() == 561 - sum(b - a + 1 for _, a, b in PERSUADE_SPANS)
    assert spans_from_bio([bio_channels(persuade_classes)[k] for k in labels]) == PERSUADE_SPANS


def test_spans_from_bio_starts_a_span_at_an_i_tag_that_continues_nothing():
    tags = ["I-X", "I-X", "O", "I-X", "B-Y", "I-X", "B-X", "B-X", "I-X"]
    assert spans_from_bio(tags) == [("X", 0, 1), ("X", 3, 3), ("Y", 4, 4), ("X", 5, 5), ("X", 6, 6), ("X", 7, 8)]
    assert spans_from_bio(np.array(["O", "B-NE-L", "I-NE-L"])) == [("NE-L", 1, 2)]
    for bad in (["-NEL"], ["B-"], ["X-Y"]):
        with pytest.raises(ValueError, match="is neither O, B-<class> nor I-<class>"):
            spans_from_bio(bad)


@pytest.mark.parametrize("spans, message", [
    ([("Rebuttal", 0, 1)], "span class 'Rebuttal' is not one of the classes"),
    ([("Lead", 0, 2), ("Claim", 2, 3)], "overlaps another span"),
    ([("Lead", 3, 4)], "is outside words 0-3"),
    ([("Lead", 2, 1)], "is outside words 0-3"),
])
def test_bio_labels_refuse_spans_one_label_per_word_cannot_hold(spans, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        bio_labels(4, spans, ["Claim", "Lead"])


def fixture_sentences(path) -> list[list[str]]:
    """The tokens of each sentence of an IL-NER file, read plainly (every line there has one tab)."""
    blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")
    return [[line.split("\t")[0] for line in block.split("\n")] for block in blocks]


def test_il_ner_train_sample_groups_sentences_into_documents(caplog):
    path = IL_NER / "Hindi-train-300.txt"
    with caplog.at_level(logging.WARNING):
        frame = read_bio_file(path, sentences_per_document=10)
    assert caplog.records == []
    sentences = fixture_sentences(path)
    assert len(sentences) == 300 and len(frame) == 30
    assert frame["id"].tolist() == [f"Hindi-train-300-{k:05d}" for k in range(30)]
    assert [t.split() for t in frame["text"]] == [sum(sentences[k: k + 10], []) for k in range(0, 300, 10)]
    words = frame["text"].iat[0].split()
    assert [(cls, " ".join(words[a: b + 1])) for cls, a, b in frame["spans"].iat[0][:6]] == [
        ("NETI", "19वीं शताब्दी के प्रारम्भ"), ("NEP", "मुत्थुस्वामी दीक्षितार"), ("NEP", "बालुस्वामी दीक्षितार"),
        ("NETI", "आज"), ("NEN", "एक"), ("NEP", "स्कॉट सी. लेवी")]
    assert frame["spans"].iat[0][:2] == [("NETI", 0, 3), ("NEP", 6, 7)]
    # No I- tag there continues nothing, so there is one span per B- tag.
    b_tags = sum(line.split("\t")[-1].startswith("B-") for line in path.read_text(encoding="utf-8").split("\n"))
    assert sum(len(spans) for spans in frame["spans"]) == b_tags == 732
    assert len(read_bio_file(path, 7)) == 43 and len(read_bio_file(path, 7)["text"].iat[-1].split()) == sum(
        len(s) for s in sentences[294:])


def test_il_ner_test_sample_reads_unprefixed_tags_as_o_with_one_counted_warning(caplog):
    with caplog.at_level(logging.WARNING):
        frame = read_bio_file(IL_NER / "Hindi-test-100.txt", sentences_per_document=1)
    assert len(frame) == 100 and frame["id"].iat[40] == "Hindi-test-100-00040"
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "read 6 tag(s) without a B-/I- prefix as O ('-'): lines 1113, 1114, 1115, 1156, 1157, ... (+1 more)"]
    words = frame["text"].iat[40].split()
    assert frame["spans"].iat[40] == [("NEN", 5, 5), ("NEP", 7, 7), ("NEP", 9, 11), ("NEP", 13, 14),
                                      ("NEP", 16, 17), ("NEP", 38, 39), ("NEP", 47, 48)]
    # The '-' tags are on "यही वह समय" (lines 1113-1115) and on the name "भैरव प्रसाद गुप्त" (lines 1156-1158).
    assert " ".join(words[0:3]) == "यही वह समय" and " ".join(words[43:46]) == "भैरव प्रसाद गुप्त"


QUIRKS = ["Ram\tB-NEP", "Kumar\tI-NEP", "went\t-", "to\t-NEL", "Delhi\tI-NEL", "O", "Noida\tB-NEP", "", "",
          "Sita\tI-NEP", "and\tO", "Gita\tB-NEP", "Rao\tI-NEL", "today\tB-NETI", "", "Mumbai\tpos\tB-NEL", ""]


def test_bio_file_quirks_are_tolerated_with_counted_warnings(tmp_path, caplog):
    path = tmp_path / "quirks.txt"
    path.write_bytes("\r\n".join(QUIRKS).encode())
    with caplog.at_level(logging.WARNING):
        frame = read_bio_file(path, sentences_per_document=2)
    assert frame["id"].tolist() == ["quirks-00000", "quirks-00001"]
    assert frame["text"].tolist() == ["Ram Kumar went to Delhi Noida Sita and Gita Rao today", "Mumbai"]
    # Noida (B-NEP) ends one sentence and Sita (I-NEP) starts the next: two spans, not one across the boundary.
    assert frame["spans"].tolist() == [[("NEP", 0, 1), ("NEL", 4, 4), ("NEP", 5, 5), ("NEP", 6, 6), ("NEP", 8, 8),
                                        ("NEL", 9, 9), ("NETI", 10, 10)], [("NEL", 0, 0)]]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "skipped 1 line(s) without a tab (token<TAB>tag expected): lines 6",
        "read 2 tag(s) without a B-/I- prefix as O ('-', '-NEL'): lines 3, 4",
        "3 I- tag(s) follow O, another class or a sentence start; each starts a new span: lines 5, 10, 13"]


@pytest.mark.parametrize("content, per_document, message", [
    ("a\tO\n\tO\nb c\tB-X\nd\u00a0e\tO\n".encode(), 1,
     "3 token(s) are empty or hold whitespace, so the document text would not split back into the file's tokens: "
     "lines 2, 3, 4"),
    ("a\tO\nb\tB-X\n\ncaf\xe9\tO\n".encode("latin-1"), 1, "not UTF-8 (byte 0xe9 on line 4)"),
    (b"\n\nO\n\n", 1, "no tokens (expected token<TAB>tag lines, a blank line between sentences)"),
    (b"a\tO\n", 0, "sentences_per_document must be a positive integer, got 0"),
])
def test_bad_bio_files_are_named_in_one_line(tmp_path, content, per_document, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    assert message in raises_one_line(read_bio_file, path, per_document)
