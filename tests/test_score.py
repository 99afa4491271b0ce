"""score.py: a submission scored against the true answers by the task's metric; answers for other ids are refused,
naming them (the bundled input/test_answers.csv is what run.sh scores the main job's submission against)."""

import subprocess

import pandas as pd

from foldnlp.config import load_config
from foldnlp.steps.score import score_submission
from foldnlp.tasks import get_task
from helpers import ROOT, run_cli


def answers_for(submission: pd.DataFrame, right: int) -> pd.DataFrame:
    """The first `right` predictions as the truth, a word no prediction holds for the other ids."""
    truth = submission["PredictionString"].where(submission.index < right, "zzzz")
    return pd.DataFrame({"id": submission["id"], "answer_text": truth})


def test_score_command_prints_the_task_metric(trained_run, tmp_path):
    submission = pd.read_csv(trained_run.submission, dtype=str, keep_default_na=False)
    assert len(submission) == 5 and not submission["PredictionString"].str.contains("zzzz").any()
    answers = tmp_path / "answers.csv"
    answers_for(submission, right=2).sample(frac=1, random_state=0).to_csv(answers, index=False)  # any row order
    code, out, err = run_cli("score.py", trained_run.submission, answers, "--quiet")
    assert code == 0, err[-3000:]
    assert out.strip() == f"jaccard 0.4000 (higher is better) of {trained_run.submission} against {answers} (5 ids)"


def test_score_is_the_mean_per_id_jaccard(tmp_path):
    submission, answers = tmp_path / "submission.csv", tmp_path / "answers.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "PredictionString": ["नई दिल्ली", "Paris", ""]}).to_csv(submission, index=False)
    pd.DataFrame({"id": ["c", "b", "a"], "answer_text": ["यमुना", "paris", "दिल्ली"]}).to_csv(answers, index=False)
    value, n = score_submission(get_task(load_config(None)), submission, answers)
    assert n == 3 and value == (1 / 2 + 1 + 0) / 3  # case-insensitive word sets; an empty answer scores 0


def test_answers_for_other_ids_are_refused_naming_them(trained_run, tmp_path):
    submission = pd.read_csv(trained_run.submission, dtype=str, keep_default_na=False)
    answers = answers_for(submission, right=5)
    answers.loc[1, "id"] = "not-a-test-id"
    path = tmp_path / "answers.csv"
    answers.to_csv(path, index=False)
    code, _, err = run_cli("score.py", trained_run.submission, path, "--quiet")
    assert code == 2 and err.strip() == (
        f"error: {trained_run.submission} and {path} must hold the same ids: 1 id(s) of {path} missing from "
        f"{trained_run.submission}: not-a-test-id; 1 id(s) in {trained_run.submission} not in {path}: "
        f"{submission.loc[1, 'id']}")
    answers.rename(columns={"answer_text": "answer"}).to_csv(path, index=False)
    code, _, err = run_cli("score.py", trained_run.submission, path, "--quiet")
    assert code == 2 and f"{path}: missing required column(s) answer_text" in err


def test_bundled_answers_match_the_bundled_test_set():
    """run.sh scores outputs/submission.csv against the answers beside the bundled test sets: the QA answers hold the
    sample submission's ids, and the script parses."""
    answers = pd.read_csv(ROOT / "input" / "test_answers.csv", dtype=str)
    sample = pd.read_csv(ROOT / "input" / "sample_submission.csv", dtype=str)
    assert sorted(answers["id"]) == sorted(sample["id"]) and len(answers) == 139
    assert subprocess.run(["bash", "-n", str(ROOT / "run.sh")]).returncode == 0
    # run.sh scores against the test_answers.* beside the test file (tests/test_run_sh.py checks the call); the
    # span default's answers are its tagged test file itself.
    spans = ROOT / "input" / "spans_ner_hi"
    assert (spans / "test_answers.txt").resolve() == (spans / "test.txt").resolve()
