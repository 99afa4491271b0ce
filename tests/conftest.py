"""Shared fixtures: offline settings, a tiny randomly initialised model with a tokenizer trained on the data, and
one tiny experiment trained, inferred and blended through the CLIs, shared by every test that needs a trained run."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from documents import GENRES, DocumentRun, document_run  # noqa: E402
from helpers import ROOT, SAMPLE_CSV, TEST_CSV, run_cli, sets, small_external_squad, tiny_settings  # noqa: E402
from spans import BIO_TEST, BIO_TRAIN, SpansRun, bio_texts, feedback_texts, spans_run, write_feedback_layout  # noqa: E402


def build_tiny_model(folder: Path, texts: list[str], long_window: int | None = None) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a WordPiece tokenizer trained on `texts` (~1 s); with
    long_window, a Longformer of that many positions (sliding attention over 16 tokens) instead."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, LongformerConfig, LongformerModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=long_window or 512)
    fast.save_pretrained(folder)
    torch.manual_seed(0)  # the same weights whatever ran before: tests must not depend on their order
    shape = dict(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64)
    if long_window:  # positions start after the padding index, as in RoBERTa
        config = LongformerConfig(**shape, attention_window=16, max_position_embeddings=long_window + 2,
                                  pad_token_id=fast.pad_token_id)
        LongformerModel(config).save_pretrained(folder)
    else:
        BertModel(BertConfig(**shape, max_position_embeddings=512)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    train = pd.read_csv(ROOT / "input" / "train.csv", dtype=str)
    texts = train["context"].drop_duplicates().tolist() + train["question"].tolist()
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), texts)


@pytest.fixture(scope="session")
def document_model_dir(tmp_path_factory) -> Path:
    """The tiny model with a tokenizer trained on the synthetic reviews of tests/documents.py."""
    from documents import classification_table

    return build_tiny_model(tmp_path_factory.mktemp("tiny-document-model"), classification_table(200)["text"].tolist())


@pytest.fixture(scope="session")
def single_label_run(document_model_dir, tmp_path_factory) -> DocumentRun:
    return document_run(tmp_path_factory.mktemp("classify"), document_model_dir, "classify", {}, {"label": "neg"})


@pytest.fixture(scope="session")
def multi_label_run(document_model_dir, tmp_path_factory) -> DocumentRun:
    section = {"multi_label": True, "label_columns": list(GENRES), "metric": "roc_auc", "truncation": "windows"}
    return document_run(tmp_path_factory.mktemp("multilabel"), document_model_dir, "classify", section,
                        {g: "0.5" for g in GENRES})


@pytest.fixture(scope="session")
def graded_run(document_model_dir, tmp_path_factory) -> DocumentRun:
    section = {"label_columns": ["grade"], "metric": "qwk", "pooling": "mean", "head_hidden": 16}
    return document_run(tmp_path_factory.mktemp("regress"), document_model_dir, "regress", section, {"grade": "1"})


@pytest.fixture(scope="session")
def multi_target_run(document_model_dir, tmp_path_factory) -> DocumentRun:
    """Two targets scored by MCRMSE (lower is better), folds grouped by author."""
    section = {"label_columns": ["grade", "score"], "metric": "mcrmse", "loss": "smooth_l1", "truncation": "head"}
    return document_run(tmp_path_factory.mktemp("multitarget"), document_model_dir, "regress", section,
                        {"grade": "1", "score": "1"}, ["folds.group_by=author"])


@dataclass(frozen=True)
class TrainedRun:
    tmp: Path  # outputs/ and folds/ of the tiny experiment are here
    model_dir: Path
    overrides: list[str]  # its --set values (name "a")
    external: Path
    stages: list[tuple[str, int, str, str]]  # (stage, exit status, stdout, stderr) of every CLI run
    submission: Path

    @property
    def root(self) -> Path:
        return self.tmp / "outputs" / "a"

    def settings(self, name: str) -> list[str]:
        """The same experiment under another name, in the same output and fold folders."""
        return tiny_settings(self.tmp, self.model_dir, name, self.external)


@pytest.fixture(scope="session")
def trained_run(tiny_model_dir, tmp_path_factory) -> TrainedRun:
    """make_folds → train_fold (both folds) → infer → ensemble of the tiny experiment, through the root CLIs
    in-process. Tests must not change it: copy it (shutil.copytree) to alter a run folder."""
    tmp = tmp_path_factory.mktemp("tiny-run")
    external = small_external_squad(tmp / "xquad.en.small.json")
    overrides = tiny_settings(tmp, tiny_model_dir, "a", external)
    test = ["--test-csv", TEST_CSV, "--sample-submission", SAMPLE_CSV]
    submission = tmp / "submission.csv"
    stages = []
    for stage, script, argv in [("make_folds", "make_folds.py", []),
                                ("train fold 0", "train_fold.py", ["--fold", 0]),
                                ("train fold 1", "train_fold.py", ["--fold", 1]),
                                ("infer", "infer.py", test),
                                ("ensemble", "ensemble.py", ["--experiments", tmp / "outputs" / "a", *test,
                                                             "--out", submission])]:
        common = sets(overrides) if script != "ensemble.py" else []
        stages.append((stage, *run_cli(script, *common, *argv)))
    return TrainedRun(tmp, tiny_model_dir, overrides, external, stages, submission)


@pytest.fixture(scope="session")
def spans_model_dir(tmp_path_factory) -> Path:
    """The tiny model with a tokenizer trained on the IL-NER fixture's tokens."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-spans-model"), bio_texts())


@pytest.fixture(scope="session")
def spans_bio_run(spans_model_dir, tmp_path_factory) -> SpansRun:
    """A tiny `spans` experiment on the IL-NER fixture (BIO files, 4 sentences a document) through the CLIs; the
    sample submission holds the header only. Tests must not change it."""
    tmp = tmp_path_factory.mktemp("spans-bio")
    sample = tmp / "sample_submission.csv"
    sample.write_text("id,class,predictionstring\n")
    data = [f"data.train_csv={BIO_TRAIN}", f"data.test_csv={BIO_TEST}", f"data.sample_submission_csv={sample}"]
    return spans_run(tmp, spans_model_dir, data, {"sentences_per_document": 4}, BIO_TEST, sample, BIO_TRAIN)


@pytest.fixture(scope="session")
def spans_feedback_run(tmp_path_factory) -> SpansRun:
    """A tiny `spans` experiment on a hand-made Feedback Prize layout (12 essays of made-up classes, test/ of 3)
    through the CLIs, the config setting only data.train_csv (test/ and sample_submission.csv are found beside it);
    its model's tokenizer is trained on those essays and the public test essays of the fixture. Tests must not
    change it."""
    tmp = tmp_path_factory.mktemp("spans-feedback")
    paths = write_feedback_layout(tmp / "competition")
    model_dir = build_tiny_model(tmp / "model", feedback_texts(tmp / "competition"))
    return spans_run(tmp, model_dir, [f"data.train_csv={paths['train']}"], {}, paths["test"], paths["sample"],
                     paths["train"])
