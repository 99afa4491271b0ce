"""Pieces of the training loop: epoch sampling, parameter groups and the QA loss."""

import numpy as np
import torch

from foldnlp.config import TrainConfig
from foldnlp.tasks.qa.task import make_loss
from foldnlp.training import TrainingSet, epoch_batches, param_groups


def make_set(n_pos=40, n_neg=100):
    rng = np.random.default_rng(0)
    ids = [np.ones(rng.integers(5, 50), dtype=np.int64) for _ in range(n_pos + n_neg)]
    return TrainingSet(ids, {}, is_negative=np.array([False] * n_pos + [True] * n_neg))


def test_every_positive_and_the_configured_share_of_negatives_each_epoch():
    data = make_set()
    cfg = TrainConfig(batch_size=8, negative_fraction=0.1)
    rng = np.random.default_rng(1)
    first = np.concatenate(epoch_batches(data, cfg, rng))
    second = np.concatenate(epoch_batches(data, cfg, rng))
    for chosen in (first, second):
        assert len(chosen) == len(set(chosen)) == 40 + 10
        assert set(range(40)) <= set(chosen)
    assert set(first[first >= 40]) != set(second[second >= 40])  # negatives are resampled per epoch


def test_batches_group_similar_lengths():
    data = make_set(n_pos=400, n_neg=0)
    batches = epoch_batches(data, TrainConfig(batch_size=8), np.random.default_rng(0))
    lengths = np.array([len(x) for x in data.input_ids])
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(400, 8)]) for i in range(50)])
    assert spread < random_spread / 3


def test_param_groups_no_decay_for_biases_and_norms_and_head_lr():
    model = torch.nn.ModuleDict({"body": torch.nn.Linear(4, 4), "norm": torch.nn.LayerNorm(4),
                                 "qa_outputs": torch.nn.Linear(4, 2)})
    groups = param_groups(model, TrainConfig(lr=1e-4, head_lr=1e-3, weight_decay=0.01), ("qa_outputs",))
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model["body"].weight)]["weight_decay"] == 0.01 and by_id[id(model["body"].weight)]["lr"] == 1e-4
    assert by_id[id(model["body"].bias)]["weight_decay"] == 0.0
    assert by_id[id(model["norm"].weight)]["weight_decay"] == 0.0
    assert by_id[id(model["qa_outputs"].weight)]["lr"] == 1e-3


def test_qa_loss_ignores_padding_and_weighs_negatives():
    logits = torch.tensor([[0.0, 2.0, 1.0, 50.0], [1.0, 0.0, 0.0, 0.0]])
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
             "start_positions": torch.tensor([1, 0]), "end_positions": torch.tensor([1, 0]),
             "is_negative": torch.tensor([False, True])}
    outputs = {"start_logits": logits, "end_logits": logits}
    ce_pos = -torch.log_softmax(torch.tensor([0.0, 2.0, 1.0]), 0)[1]  # the padded 50.0 takes no mass
    ce_neg = -torch.log_softmax(logits[1], 0)[0]
    loss = make_loss(TrainConfig(negative_loss_weight=0.5))(outputs, batch)
    assert torch.isclose(loss, (ce_pos + 0.5 * ce_neg) / 1.5)
    only_end = make_loss(TrainConfig(start_loss_weight=0.0))
    outputs_end = {"start_logits": torch.zeros(2, 4), "end_logits": logits}
    assert torch.isclose(only_end(outputs_end, batch), (ce_pos + ce_neg) / 2)
