"""Pieces of the training loop: the per-epoch sample, length-grouped batches, padding and parameter groups."""

import numpy as np
import pytest
import torch

from foldnlp.batching import IGNORE_INDEX, TrainingSet, collate, epoch_batches, epoch_sample
from foldnlp.config import TrainConfig
from foldnlp.training import param_groups


def make_set(n_kept=40, n_sampled=100, chance=0.1):
    rng = np.random.default_rng(0)
    ids = [np.ones(rng.integers(5, 50), dtype=np.int64) for _ in range(n_kept + n_sampled)]
    return TrainingSet(ids, {}, keep_chance=np.array([1.0] * n_kept + [chance] * n_sampled))


def test_every_always_kept_window_and_the_configured_share_of_the_others_each_epoch():
    data = make_set()
    rng = np.random.default_rng(1)
    first = np.concatenate(epoch_batches(data, 8, rng))
    second = np.concatenate(epoch_batches(data, 8, rng))
    for chosen in (first, second):
        assert len(chosen) == len(set(chosen)) == 40 + 10
        assert set(range(40)) <= set(chosen)
    assert set(first[first >= 40]) != set(second[second >= 40])  # the sampled windows are redrawn per epoch


def test_windows_of_each_chance_are_drawn_in_exact_counts():
    ids = [np.ones(4, dtype=np.int64)] * 60
    data = TrainingSet(ids, {}, keep_chance=np.array([1.0] * 10 + [0.5] * 20 + [0.25] * 28 + [0.0] * 2))
    chosen = epoch_sample(data, np.random.default_rng(0))
    assert len(chosen) == 10 + 10 + 7
    assert set(range(10)) <= set(chosen) and not {58, 59} & set(chosen)
    assert sum(10 <= i < 30 for i in chosen) == 10


def test_batches_group_similar_lengths():
    data = make_set(n_kept=400, n_sampled=0)
    batches = epoch_batches(data, 8, np.random.default_rng(0))
    lengths = np.array([len(x) for x in data.input_ids])
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(400, 8)]) for i in range(50)])
    assert spread < random_spread / 3


def test_collate_pads_per_token_targets_with_the_ignore_index_and_keeps_per_window_ones():
    ids = [np.array([5, 6, 7]), np.array([8])]
    data = TrainingSet(ids, {"label": np.array([1, 0]), "tags": [np.array([0, 2, 1]), np.array([2])]},
                       keep_chance=np.ones(2))
    batch = collate(data, np.array([1, 0]), pad_id=0)
    assert batch["input_ids"].tolist() == [[8, 0, 0], [5, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert batch["label"].tolist() == [0, 1]
    assert batch["tags"].tolist() == [[2, IGNORE_INDEX, IGNORE_INDEX], [0, 2, 1]]


def test_a_training_set_whose_targets_do_not_match_its_windows_is_refused():
    with pytest.raises(AssertionError):
        TrainingSet([np.ones(3)] * 2, {"label": np.array([1])}, keep_chance=np.ones(2))


def test_param_groups_no_decay_for_biases_and_norms_and_head_lr():
    model = torch.nn.ModuleDict({"body": torch.nn.Linear(4, 4), "norm": torch.nn.LayerNorm(4),
                                 "qa_outputs": torch.nn.Linear(4, 2)})
    groups = param_groups(model, TrainConfig(lr=1e-4, head_lr=1e-3, weight_decay=0.01), ("qa_outputs",))
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model["body"].weight)]["weight_decay"] == 0.01 and by_id[id(model["body"].weight)]["lr"] == 1e-4
    assert by_id[id(model["body"].bias)]["weight_decay"] == 0.0
    assert by_id[id(model["norm"].weight)]["weight_decay"] == 0.0
    assert by_id[id(model["qa_outputs"].weight)]["lr"] == 1e-3
