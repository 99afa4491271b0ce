"""Experiment configs: YAML loading, typed --set overrides, and refusal of unknown keys and impossible values."""


import pytest

from foldnlp.config import ExperimentConfig, dump_yaml, load_config, to_dict
from foldnlp.errors import InputError
from foldnlp.provenance import config_sha256
from helpers import ROOT


def test_default_config_file_loads_and_keeps_the_documented_keys():
    cfg = load_config(ROOT / "configs" / "default.yaml")
    assert cfg.name == "default"
    for value in (cfg.data.train_csv, cfg.data.test_csv, cfg.model.name_or_path, cfg.folds.n_folds, cfg.folds.seed,
                  cfg.train.epochs, cfg.train.lr, cfg.train.batch_size, cfg.features.max_len, cfg.features.doc_stride):
        assert value is not None
    assert cfg.data.sample_submission_csv is None  # → sample_submission.csv beside the test CSV


def test_overrides_are_cast_to_the_field_type():
    cfg = load_config(None, ["train.lr=3e-5", "train.batch_size=8", "train.epochs=2", "model.dropout=null",
                             "model.freeze_word_embeddings=false", "qa.external_squad=[english:a.json]",
                             "qa.max_context_words=500", "name=exp2"])
    assert cfg.train.lr == 3e-5 and isinstance(cfg.train.lr, float)
    assert cfg.train.batch_size == 8 and isinstance(cfg.train.batch_size, int)
    assert cfg.train.epochs == 2.0 and cfg.model.dropout is None and cfg.model.freeze_word_embeddings is False
    assert cfg.settings.external_squad == ["english:a.json"] and cfg.settings.max_context_words == 500
    assert cfg.name == "exp2"


@pytest.mark.parametrize("override, message", [
    ("train.lr=fast", "train.lr: expected float, got 'fast'"),
    ("train.batch_size=1.5", "train.batch_size: expected int, got 1.5"),
    ("train.learning_rate=1", "unknown key(s) learning_rate"),
    ("trian.lr=1", "unknown key(s) trian"),
    ("features.doc_stride=256", "features.doc_stride (256) must be >= 0 and below features.max_len (256)"),
    ("train.scheduler=step", "train.scheduler: 'step' is not one of linear, cosine"),
    ("qa.negative_fraction=1.5", "qa.negative_fraction and qa.start_loss_weight must lie in [0, 1]"),
    ("qa.external_squad=[x.json]", "qa.external_squad entry 'x.json': expected language:path"),
    ("qa.decode.n_bset=3", "qa.decode: unknown key(s) n_bset"),
    ("data.train_csv=null", "data.train_csv: expected str, got None"),
    ("task=ner", "task: 'ner' is not one of qa"),
    ("runtime.eval_batch_size=0", "runtime.eval_batch_size positive"),
    ("model.freeze_word_embeddings=maybe", "expected bool"),
    ("lr", "expected section.key=value"),
])
def test_bad_overrides_are_refused_with_the_key_named(override, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(None, [override])


def test_yaml_round_trip_gives_the_same_config(tmp_path):
    cfg = load_config(None, ["train.lr=2e-5", "qa.external_squad=[english:x.json]"])
    (tmp_path / "c.yaml").write_text(dump_yaml(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InputError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "typo.yaml").write_text("train:\n  lr: 1e-4\n  epoch: 3\n")
    with pytest.raises(InputError, match=r"typo.yaml.train: unknown key\(s\) epoch"):
        load_config(tmp_path / "typo.yaml")


def test_fold_scheme_name_carries_every_fold_setting():
    assert load_config(None).folds.scheme == "language-context-k3-seed42"  # QA's fold defaults
    assert ExperimentConfig().folds.scheme == "nostrat-nogroup-k3-seed42"  # the generic defaults: none
    assert load_config(None, ["folds.stratify_by=null", "folds.seed=7"]).folds.scheme == "nostrat-context-k3-seed7"


def test_the_task_section_is_keyed_by_the_task_name_and_typed_by_the_task():
    cfg = load_config(None, ["qa.decode.max_answer_chars=60"])
    assert type(cfg.settings).__name__ == "QASettings" and cfg.settings.decode.max_answer_chars == 60
    assert to_dict(cfg)["qa"]["decode"]["max_answer_chars"] == 60 and "settings" not in to_dict(cfg)


def test_keys_of_earlier_configs_are_read_where_they_moved(tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  external_squad: []\nfeatures:\n  max_context_words: 300\ntrain:\n"
                   "  save_every_steps: 7\n  negative_fraction: 0.2\ndecode:\n  max_answer_chars: 50\n")
    cfg = load_config(old)
    assert cfg.settings.external_squad == [] and cfg.settings.max_context_words == 300
    assert cfg.settings.negative_fraction == 0.2 and cfg.settings.decode.max_answer_chars == 50
    assert cfg.runtime.save_every_steps == 7
    assert "train.save_every_steps is now runtime.save_every_steps" in caplog.text
    assert "decode is now qa.decode" in caplog.text


def test_runtime_settings_stay_out_of_the_provenance_hash_and_the_experiment_inside():
    base = config_sha256(load_config(None))
    for runtime in ("runtime.save_every_steps=5", "runtime.eval_batch_size=8", "inference.batch_size=4",
                    "inference.chunk_chars=1000", "tracking.wandb=disabled", "output_dir=elsewhere", "name=copy"):
        assert config_sha256(load_config(None, [runtime])) == base, runtime
    for learned in ("train.lr=2e-5", "features.doc_stride=64", "qa.negative_fraction=0.2", "train.precision=fp32"):
        assert config_sha256(load_config(None, [learned])) != base, learned


def test_every_bundled_config_loads_and_names_a_known_task():
    """configs/*.yaml document recipes (some need data the user supplies): each must at least be a valid config."""
    from foldnlp.config import load_config
    from foldnlp.tasks import TASK_NAMES
    from helpers import ROOT

    loaded = {path.name: load_config(path) for path in sorted((ROOT / "configs").glob("*.yaml"))}
    assert {"default.yaml", "imdb.yaml", "essays.yaml"} <= set(loaded)
    assert all(cfg.task in TASK_NAMES for cfg in loaded.values())
    assert loaded["imdb.yaml"].settings.truncation == "head_tail" and loaded["essays.yaml"].settings.metric == "qwk"
