"""A long-window model (Longformer-style, 1,024-4,096 positions) takes each essay as one window: the 500 real
Feedback Prize training essays windowed at max_len 2,048 for a tiny random Longformer, predicted and turned into
per-word scores; and a tiny spans experiment trained, inferred and blended through the CLIs with it."""

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from conftest import build_tiny_model
from foldnlp.config import from_dict
from foldnlp.inference import predict
from foldnlp.tasks import get_task
from foldnlp.tasks.spans.data import read_feedback_test, read_feedback_train
from helpers import FIXTURES
from spans import feedback_texts, spans_run, write_feedback_layout

FEEDBACK_TRAIN = FIXTURES / "feedback_prize_train_500"


@pytest.fixture(scope="module")
def essays() -> pd.DataFrame:
    return read_feedback_test(FEEDBACK_TRAIN)


@pytest.fixture(scope="module")
def longformer_dir(tmp_path_factory, essays):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-longformer"), essays["text"].tolist(), long_window=2048)


def test_every_real_essay_is_one_long_window_scored_per_word(longformer_dir, essays):
    cfg = from_dict({"task": "spans", "model": {"name_or_path": str(longformer_dir)},
                     "features": {"max_len": 2048, "doc_stride": 128},
                     "spans": {"classes": ["Claim", "Evidence", "Lead"]}})
    task = get_task(cfg)
    tokenizer = AutoTokenizer.from_pretrained(longformer_dir)
    task.check_windows(tokenizer, essays)
    windows = task.windows(tokenizer, essays, with_targets=False)
    lengths = np.array([len(ids) for ids in windows.input_ids])
    assert windows.example_index.tolist() == list(range(500))  # one window per essay
    assert lengths.max() > 1024  # the longest essays need more than a 1,024-token window
    assert (lengths == [len(tokenizer(t.split(), is_split_into_words=True)["input_ids"]) for t in essays["text"]]).all()
    longest = np.argsort(-lengths)[:8]
    subset = essays.iloc[longest].reset_index(drop=True)
    windows = task.windows(tokenizer, subset, with_targets=False)
    model = task.load_model(str(longformer_dir), cfg.model)
    outputs = predict(model, windows.input_ids, pad_id=tokenizer.pad_token_id, batch_size=4, precision="fp32",
                      outputs=task.outputs, progress=False)
    assert [o.shape for o in outputs["logits"]] == [(len(ids), 7) for ids in windows.input_ids]
    scores = task.to_scores(subset, windows, outputs)
    assert np.diff(scores.offsets).tolist() == [len(t.split()) for t in subset["text"]]
    assert np.isfinite(scores.values.astype(np.float32)).all()
    np.testing.assert_allclose(np.exp(scores.values.astype(np.float32)).sum(axis=1), 1.0, atol=0.01)


def test_a_longformer_trains_infers_and_blends_through_the_clis(tmp_path):
    layout = write_feedback_layout(tmp_path / "competition", n_train=8, n_test=2)
    model_dir = build_tiny_model(tmp_path / "model", feedback_texts(tmp_path / "competition"), long_window=1024)
    run = spans_run(tmp_path, model_dir, [f"data.train_csv={layout['train']}"], {}, layout["test"], layout["sample"],
                    layout["train"], extra=["features.max_len=1024", "features.doc_stride=128"])
    _, out, err = run.stage("fold 0")
    n_train_essays = len(read_feedback_train(layout["train"])) // 2
    assert f"training on {n_train_essays} of {n_train_essays} windows per epoch" in out + err
    submission = pd.read_csv(run.submission, dtype=str, keep_default_na=False)
    assert submission.columns.tolist() == ["id", "class", "predictionstring"]
