"""Score a submission against the true answers of its test set by the task's metric (the competition's), e.g. the
bundled test set: python score.py outputs/submission.csv input/test_answers.csv."""

import sys

from foldnlp import cli


def main(argv=None) -> int:
    p = cli.parser(__doc__ + " The config names the task (and its settings) whose metric scores.")
    p.add_argument("submission", help="the submission file (QA: id, PredictionString; classification: id and the "
                                      "label or probability columns; regression: id and the targets), e.g. "
                                      "outputs/submission.csv")
    p.add_argument("answers", help="the true answers of the same ids (QA: id, answer_text; classification and "
                                   "regression: id and the label columns), e.g. input/test_answers.csv")

    def run(args) -> int:
        from foldnlp.steps.score import score_submission
        from foldnlp.tasks import get_task

        task = get_task(cli.config_from(args))
        value, n = score_submission(task, args.submission, args.answers)
        better = "higher" if task.higher_is_better else "lower"
        print(f"{task.metric_name} {value:.4f} ({better} is better) of {args.submission} against {args.answers} "
              f"({n} ids)")
        return 0

    return cli.run(run, p, argv)


if __name__ == "__main__":
    sys.exit(main())
