"""Build the bundled default data in input/ from XQuAD dev: Hindi split by article into train/test, English as external.

Usage: python input/build_default.py --xquad-dir /path/to/xquad   (folder with xquad.{hi,en}.dev.json, CC-BY-SA4.0.txt)
"""

import argparse
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
from foldnlp.data import QA_TEST_COLUMNS, read_qa_csv, read_squad_json

OUT = Path(__file__).resolve().parent
# Whole articles go to test so no context (or article) is shared between train and test.
N_TEST_ARTICLES = 6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xquad-dir", type=Path, required=True,
                        help="folder with xquad.hi.dev.json, xquad.en.dev.json and CC-BY-SA4.0.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    hindi_json = args.xquad_dir / "xquad.hi.dev.json"
    questions = read_squad_json(hindi_json, "hindi")
    is_train = questions["id"].isin(_train_question_ids(hindi_json)).to_numpy()
    train, test = questions[is_train].reset_index(drop=True), questions[~is_train].reset_index(drop=True)

    _write_csv(train, OUT / "train.csv")
    _write_csv(test[list(QA_TEST_COLUMNS)], OUT / "test.csv")
    _write_csv(test[["id", "answer_text"]], OUT / "test_answers.csv")
    _write_csv(test[["id"]].assign(PredictionString=""), OUT / "sample_submission.csv")
    (OUT / "external").mkdir(exist_ok=True)
    shutil.copyfile(args.xquad_dir / "xquad.en.dev.json", OUT / "external" / "xquad.en.json")
    shutil.copyfile(args.xquad_dir / "CC-BY-SA4.0.txt", OUT / "LICENSE-XQuAD.txt")

    # The CSV must reproduce the texts exactly (newlines, quotes inside contexts), or answer offsets would drift.
    pd.testing.assert_frame_equal(read_qa_csv(OUT / "train.csv", with_answers=True), train)
    logging.info("train: %d rows, test: %d rows -> %s", len(train), len(test), OUT)


def _train_question_ids(squad_json: Path) -> set[str]:
    articles = json.loads(squad_json.read_text(encoding="utf-8"))["data"][:-N_TEST_ARTICLES]
    return {str(qa["id"]) for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


if __name__ == "__main__":
    main()
