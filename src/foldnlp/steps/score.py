"""Score a submission file against a file of the true answers, by the task's own metric."""

from __future__ import annotations

from pathlib import Path

from foldnlp.errors import InputError
from foldnlp.tables import describe_id_differences


def score_submission(task, submission: str | Path, answers: str | Path) -> tuple[float, int]:
    """(the task's metric of the submission against the answers, number of ids scored).

    Both files must hold the same ids (InputError naming the ids otherwise): a submission scored on a subset, or
    against answers of another test set, would print a number that means nothing.
    """
    truth = task.read_answers(answers)
    predictions = task.read_submission(submission)
    differences = describe_id_differences(truth["id"], predictions["id"].drop_duplicates(), str(answers),
                                          str(submission))
    if differences:
        raise InputError(f"{submission} and {answers} must hold the same ids: {differences}")
    return task.score(truth, predictions), len(truth)
