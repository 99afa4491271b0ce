"""The QA task through the seam: registry, config section, training windows, loss, decoding and submission."""

import numpy as np
import pandas as pd
import torch

from foldnlp.config import load_config
from foldnlp.modeling import load_tokenizer
from foldnlp.tasks import get_task
from foldnlp.tasks.qa.charscores import char_scores

CONTEXT = "Paris is the capital of France. Paris has the Louvre."


def qa(*overrides):
    return get_task(load_config(None, list(overrides)))


def test_registry_gives_the_qa_task_with_its_metric_and_score_shape():
    task = qa()
    assert (task.name, task.metric_name, task.higher_is_better) == ("qa", "jaccard", True)
    assert (task.unit, task.channels) == ("char", ("start", "end"))
    assert task.training_files() == ["input/train.csv", "input/external/xquad.en.json"]


def test_answer_windows_are_always_trained_and_a_share_of_the_others(tiny_model_dir):
    task = qa("features.max_len=32", "features.doc_stride=8", "qa.negative_fraction=0.25")
    frame = pd.DataFrame({"id": ["a"], "context": [CONTEXT * 3], "question": ["Capital?"],
                          "answer_text": ["Louvre"], "answer_start": [CONTEXT.index("Louvre")]})
    windows = task.windows(load_tokenizer(str(tiny_model_dir)), frame, with_targets=True)
    data = task.training_set(windows)
    assert len(windows) > 2
    np.testing.assert_array_equal(data.keep_chance, np.where(windows.has_answer, 1.0, 0.25))
    np.testing.assert_array_equal(data.targets["is_negative"], ~windows.has_answer)


def test_qa_loss_ignores_padding_and_weighs_negatives():
    logits = torch.tensor([[0.0, 2.0, 1.0, 50.0], [1.0, 0.0, 0.0, 0.0]])
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
             "start_positions": torch.tensor([1, 0]), "end_positions": torch.tensor([1, 0]),
             "is_negative": torch.tensor([False, True])}
    outputs = {"start_logits": logits, "end_logits": logits}
    ce_pos = -torch.log_softmax(torch.tensor([0.0, 2.0, 1.0]), 0)[1]  # the padded 50.0 takes no mass
    ce_neg = -torch.log_softmax(logits[1], 0)[0]
    assert torch.isclose(qa("qa.negative_loss_weight=0.5").loss(outputs, batch), (ce_pos + 0.5 * ce_neg) / 1.5)
    outputs_end = {"start_logits": torch.zeros(2, 4), "end_logits": logits}
    assert torch.isclose(qa("qa.start_loss_weight=0").loss(outputs_end, batch), (ce_pos + ce_neg) / 2)


def test_decode_score_and_submit_by_id():
    task = qa("qa.decode.n_best=2")
    contexts = [CONTEXT, "नई दिल्ली भारत की राजधानी है।"]
    frame = pd.DataFrame({"id": ["en", "hi"], "context": contexts, "answer_text": ["Paris", "नई दिल्ली"],
                          "language": ["english", "hindi"]})
    starts = [np.full(len(c), -9.0) for c in contexts]
    ends = [np.full(len(c), -9.0) for c in contexts]
    starts[0][0], ends[0][4] = 0.0, 0.0  # "Paris"
    starts[1][0], ends[1][len("नई दिल्ली भारत") - 1] = 0.0, 0.0  # "नई दिल्ली भारत": Jaccard 2/3
    scores = char_scores(["en", "hi"], starts, ends)
    predictions = task.decode(frame, scores)
    assert predictions.to_dict("list") == {"id": ["en", "hi"], "prediction": ["Paris", "नई दिल्ली भारत"]}
    assert task.score(frame, predictions) == (1 + 2 / 3) / 2
    assert task.with_truth(frame, predictions)["answer_text"].tolist() == ["Paris", "नई दिल्ली"]
    sample = pd.DataFrame({"id": ["hi", "en"], "PredictionString": ["", ""]})
    assert task.submission(sample, predictions).to_dict("list") == {"id": ["hi", "en"],
                                                                    "PredictionString": ["नई दिल्ली भारत", "Paris"]}
    report = task.cv_report(frame, scores, pd.Series({"en": 0, "hi": 1}))
    assert report.startswith("CV Jaccard (out-of-fold, 2 questions, folds [0, 1]): 0.8333")
    assert "0: 1.0000 (n=1)" in report and "hindi: 0.6667 (n=1)" in report
    nbest = task.side_tables(frame, scores)["nbest"]
    assert nbest.groupby("id").size().to_dict() == {"en": 2, "hi": 2}
    assert not qa("qa.decode.n_best=1").side_tables(frame, scores)
