"""Large backbones that fit: gradient checkpointing (the same training, less memory), the batch-size probe (its CUDA
search against a fake step, its CPU rule on the tiny model), 8-bit AdamW refused where it cannot run, precision
auto per GPU generation, and the accelerate config files of configs/accelerate/ read by accelerate's own parser."""

import os
import re
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

from foldnlp import batch_probe, modeling
from foldnlp.config import ModelConfig, TrainConfig, load_config
from foldnlp.errors import InputError
from foldnlp.optimizers import check_available, make_optimizer
from foldnlp.precision import resolve_precision
from foldnlp.tasks.document import model as document_model
from foldnlp.training import param_groups
from helpers import ROOT, main_of, run_cli, sets

# Losses of the same steps with and without checkpointing agree to this relative tolerance (fp32 on CPU: the
# recomputed forward runs the same kernels on the same inputs, so in practice they are equal).
LOSS_RTOL = 1e-5
STEPS, BATCH, TOKENS = 4, 4, 24


def load_head(head: str, folder, checkpointing: bool):
    """The tiny backbone with the head a task loads (QA; spans: token classes; classify and regress: the pooled
    document head), dropout off so that training is deterministic."""
    cfg = ModelConfig(name_or_path=str(folder), dropout=0.0, gradient_checkpointing=checkpointing)
    torch.manual_seed(0)  # the fresh head's initial weights
    if head == "qa":
        return modeling.load_model(AutoModelForQuestionAnswering, str(folder), cfg)
    if head == "spans":
        return modeling.load_model(AutoModelForTokenClassification, str(folder), cfg, num_labels=3)
    shape = document_model.HeadShape(n_outputs=2, pooling="mean", hidden=16, activation="gelu", dropout=0.0)
    return document_model.new_model(str(folder), shape, cfg)


def head_loss(head: str, outputs, targets: torch.Tensor) -> torch.Tensor:
    if head == "qa":
        return F.cross_entropy(outputs["start_logits"], targets) + F.cross_entropy(outputs["end_logits"], targets)
    if head == "spans":
        logits = outputs["logits"]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), (targets[:, None] % 3).expand(-1, TOKENS)
                               .reshape(-1))
    return F.cross_entropy(outputs["logits"], targets % 2)


def backbone_of(head: str, model):
    return model.backbone if head == "document" else model.base_model


def train_losses(head: str, folder, checkpointing: bool) -> tuple[list[float], int, object]:
    """(loss of each of STEPS AdamW steps on one batch, forward calls of the first layer's attention, the trained
    model). The hook is on a module inside the layer: transformers checkpoints a layer's forward, inside its hooks."""
    model = load_head(head, folder, checkpointing)
    backbone = backbone_of(head, model)
    layer_calls = []
    backbone.encoder.layer[0].attention.register_forward_hook(lambda *args: layer_calls.append(1))
    cfg = TrainConfig(lr=1e-3, head_lr=1e-3)
    optimizer = make_optimizer(param_groups(model, cfg, ("qa_outputs", "classifier", "head")), cfg, torch.device("cpu"))
    rng = np.random.default_rng(0)
    model.train()
    losses = []
    ids = torch.from_numpy(rng.integers(5, backbone.config.vocab_size, size=(BATCH, TOKENS)))
    targets = torch.from_numpy(rng.integers(0, TOKENS, size=BATCH))
    for _ in range(STEPS):  # the same batch every step: its loss must fall
        loss = head_loss(head, model(input_ids=ids, attention_mask=torch.ones_like(ids)), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, len(layer_calls), model


@pytest.mark.parametrize("head", ["qa", "spans", "document"])
def test_gradient_checkpointing_trains_to_the_same_loss_with_its_layers_recomputed(head, tiny_model_dir):
    plain, plain_calls, plain_model = train_losses(head, tiny_model_dir, checkpointing=False)
    checkpointed, calls, model = train_losses(head, tiny_model_dir, checkpointing=True)
    assert backbone_of(head, model).is_activation_checkpointing
    assert not backbone_of(head, plain_model).is_activation_checkpointing
    assert plain_calls == STEPS and calls == 2 * STEPS  # each layer's forward runs again in the backward pass
    assert plain[-1] < plain[0]  # it trains at all
    np.testing.assert_allclose(checkpointed, plain, rtol=LOSS_RTOL)
    for (name, a), (_, b) in zip(plain_model.named_parameters(), model.named_parameters()):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_gradient_checkpointing_is_a_config_setting_off_by_default():
    assert load_config(None).model.gradient_checkpointing is False
    assert load_config(None, ["model.gradient_checkpointing=true"]).model.gradient_checkpointing is True


# ---- the batch-size probe ------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [1, 2, 3, 8, 9, 100, 1023, 1024])
def test_cuda_search_returns_exactly_the_largest_batch_that_does_not_run_out_of_memory(threshold):
    tried, released = [], []

    def step(batch_size: int) -> None:
        tried.append(batch_size)
        if batch_size > threshold:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")

    fits = batch_probe.cuda_fits(step, lambda: released.append(1))
    assert batch_probe.largest_fitting(fits, limit=1024) == threshold
    doubling = [b for b in tried if b & (b - 1) == 0][: int(np.log2(threshold)) + 1]
    assert tried[: len(doubling)] == [2**i for i in range(len(doubling))]  # powers of two first
    assert len(tried) <= 2 * int(np.log2(1024)) + 2 and len(released) == len(tried)


def test_cuda_search_edges_and_other_errors():
    never = batch_probe.cuda_fits(lambda b: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")), lambda: None)
    assert batch_probe.largest_fitting(never, limit=64) == 0
    assert batch_probe.largest_fitting(lambda b: True, limit=100) == 100  # stops at the limit, not a power of two
    broken = batch_probe.cuda_fits(lambda b: (_ for _ in ()).throw(RuntimeError("shape mismatch")), lambda: None)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # only running out of memory means "does not fit"
        batch_probe.largest_fitting(broken)


def test_cpu_rule():
    mib = 2**20
    # peak(b) = 1000 + 100 (b - 1) MiB within 900 + 0.8 × 2000 = 2500 MiB: b = 16 (peak 2500), not 17
    assert batch_probe.cpu_batch_size(1000 * mib, 1100 * mib, 900 * mib, 2000 * mib) == 16
    assert batch_probe.cpu_batch_size(3000 * mib, 3100 * mib, 900 * mib, 2000 * mib) == 0  # even batch 1 is over
    assert batch_probe.cpu_batch_size(1000 * mib, 1100 * mib, 900 * mib, 10**7 * mib) == batch_probe.PROBE_LIMIT
    # an unmeasurable per-window difference counts as MIN_WINDOW_BYTES (1 MiB): (2500 - 1000) / 1 + 1
    assert batch_probe.cpu_batch_size(1000 * mib, 1000 * mib, 900 * mib, 2000 * mib, limit=10**6) == 1501


def test_probe_batch_size_on_cpu_prints_the_rule_and_its_answer_and_trains_nothing(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    """The peaks and resident memory are measured; the available memory is set (from the measures) to leave room
    for exactly 3 windows more than batch 1, so the rule's answer is 4 on any machine."""
    measured = {"peaks": []}
    peak_during, resident = batch_probe.peak_resident_during, batch_probe.resident_bytes

    def recorded_peak(run):
        measured["peaks"].append(peak_during(run))
        return measured["peaks"][-1]

    def recorded_resident():
        measured["resident"] = resident()
        return measured["resident"]

    def room_for_three_more():
        peak_1, peak_2 = measured["peaks"]
        per_window = max(peak_2 - peak_1, batch_probe.MIN_WINDOW_BYTES)
        return int((peak_1 + 3.5 * per_window - measured["resident"]) / batch_probe.CPU_MEMORY_FRACTION)

    monkeypatch.setattr(batch_probe, "peak_resident_during", recorded_peak)
    monkeypatch.setattr(batch_probe, "resident_bytes", recorded_resident)
    monkeypatch.setattr(batch_probe, "available_bytes", room_for_three_more)
    overrides = [f"model.name_or_path={tiny_model_dir}", f"output_dir={tmp_path / 'outputs'}",
                 f"folds.folds_dir={tmp_path / 'folds'}", "features.max_len=96", "features.doc_stride=32",
                 "qa.max_question_tokens=32", "data.max_train_examples=40",  # precision: the suite's, auto
                 "train.batch_size=12", "train.grad_accum_steps=2"]
    code, out, err = run_cli("train_fold.py", "--probe-batch-size", *sets(overrides))
    assert code == 0, err[-2000:]
    assert not (tmp_path / "outputs").exists()  # nothing trained, nothing written
    assert "batches of copies of the longest training window, 96 tokens" in out
    assert measured["peaks"][0] > measured["resident"] / 2  # real readings of this process (model, data, torch)
    assert "largest per-device batch: 4 (estimated peak memory" in out, out
    # The configured batch does not fit: the same effective batch (24) by accumulation, in batches of at most 4.
    assert "--set train.batch_size=4 --set train.grad_accum_steps=6" in out


def test_available_memory_is_read_from_the_system():
    total = int(re.search(r"MemTotal:\s+(\d+) kB", open("/proc/meminfo").read()).group(1)) * 1024
    assert 0 < batch_probe.available_bytes() <= total
    assert 0 < batch_probe.resident_bytes() <= batch_probe.peak_resident_during(lambda: bytearray(1 << 20))


def test_train_fold_takes_a_fold_or_the_probe(capsys):
    for argv, message in [(["--fold", "0", "--probe-batch-size"], "not allowed with argument"),
                          ([], "one of the arguments --fold --probe-batch-size is required")]:
        with pytest.raises(SystemExit) as exit_info:
            main_of("train_fold.py")(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ---- 8-bit AdamW ---------------------------------------------------------------------------------------------


def test_adamw_8bit_is_refused_on_cpu_and_without_bitsandbytes_naming_the_setting(monkeypatch):
    assert load_config(None, ["train.optimizer=adamw_8bit"]).train.optimizer == "adamw_8bit"
    with pytest.raises(InputError, match="train.optimizer: 'sgd' is not one of adamw, adamw_8bit"):
        load_config(None, ["train.optimizer=sgd"])
    with pytest.raises(InputError, match=r"^train\.optimizer: adamw_8bit needs a CUDA GPU.*on cpu"):
        check_available("adamw_8bit", torch.device("cpu"))
    check_available("adamw", torch.device("cpu"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"^train\.optimizer: adamw_8bit needs bitsandbytes, which is not installed"):
        check_available("adamw_8bit", torch.device("cuda"))


def test_adamw_8bit_is_bitsandbytes_optimizer_with_the_configured_groups(monkeypatch):
    """Where CUDA and bitsandbytes are present (faked here: a stand-in module), the groups, betas and epsilon go
    to bitsandbytes.optim.AdamW8bit."""
    import sys
    import types

    made = {}

    class AdamW8bit(torch.optim.AdamW):
        def __init__(self, groups, **kwargs):
            made.update(kwargs, groups=groups)
            super().__init__(groups, **kwargs)

    fake = types.ModuleType("bitsandbytes")
    fake.optim = types.SimpleNamespace(AdamW8bit=AdamW8bit)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    cfg = TrainConfig(optimizer="adamw_8bit", adam_beta2=0.98, adam_eps=1e-6)
    groups = [{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 1e-3, "weight_decay": 0.0}]
    optimizer = make_optimizer(groups, cfg, torch.device("cuda"))
    assert isinstance(optimizer, AdamW8bit) and made["betas"] == (0.9, 0.98) and made["eps"] == 1e-6


def test_train_fold_refuses_adamw_8bit_on_cpu_before_reading_anything(tmp_path):
    code, _, err = run_cli("train_fold.py", "--fold", "0", "--set", "train.optimizer=adamw_8bit", "--set",
                           f"output_dir={tmp_path}", "--set", f"folds.folds_dir={tmp_path / 'no-folds'}")
    assert code == 2 and "error: train.optimizer: adamw_8bit needs a CUDA GPU" in err
    assert "fold file" not in err


# ---- precision auto ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 0), "fp16"),
                                                  ((8, 0), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16")])
def test_precision_auto_is_bf16_on_ampere_and_newer_and_fp16_before(monkeypatch, capability, expected):
    """T4 (7.5), V100 (7.0), P100 (6.0): fp16; A100 (8.0), L4 (8.9), H100 (9.0): bf16 (torch.cuda mocked)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("fp16", torch.device("cuda")) == "fp16"  # an explicit choice is kept
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


# ---- accelerate config files ---------------------------------------------------------------------------------

ACCELERATE_CONFIGS = ROOT / "configs" / "accelerate"


def launch_settings(name: str):
    """What `accelerate launch --config_file configs/accelerate/<name>.yaml train_fold.py` makes of the file, by
    accelerate's own code: its config parser, its launch-argument validation and the environment it gives the
    processes (no process is started; DeepSpeed itself is needed only by the launch that follows)."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = str(ACCELERATE_CONFIGS / f"{name}.yaml")
    parsed = load_config_from_file(path)
    assert isinstance(parsed, ClusterConfig)
    args = launch_command_parser().parse_args(["--config_file", path, "train_fold.py", "--fold", "0"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch does
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return parsed, args, env


def test_every_accelerate_config_is_one_of_the_four_and_loads():
    assert sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")) == \
        ["ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"]


def test_ddp_config_launches_multi_gpu():
    parsed, args, env = launch_settings("ddp")
    assert parsed.distributed_type == "MULTI_GPU" and args.multi_gpu and args.num_processes == 2
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"  # foldnlp's train.precision decides


def test_fsdp_config_gives_an_fsdp2_plugin_wrapping_transformer_layers():
    from accelerate.utils import FullyShardedDataParallelPlugin

    parsed, args, env = launch_settings("fsdp")
    assert parsed.distributed_type == "FSDP" and args.use_fsdp
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.cpu_ram_efficient_loading
    assert not plugin.activation_checkpointing  # model.gradient_checkpointing is the one switch


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_give_zero_plugins_that_leave_accumulation_to_foldnlp(stage):
    from accelerate.utils import DeepSpeedPlugin

    parsed, args, env = launch_settings(f"deepspeed_zero{stage}")
    assert parsed.distributed_type == "DEEPSPEED" and args.use_deepspeed
    with mock.patch.dict(os.environ, env):
        plugin = DeepSpeedPlugin()
    config = plugin.deepspeed_config
    assert config["zero_optimization"]["stage"] == stage
    assert config["gradient_accumulation_steps"] == "auto"  # filled from train.grad_accum_steps by the Accelerator
    assert config["gradient_clipping"] == TrainConfig().max_grad_norm
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def test_under_deepspeed_the_accelerator_is_given_the_per_process_batch(monkeypatch):
    """accelerate sizes DeepSpeed's micro-batch from a DataLoader passed to prepare(), which fit() has none of: the
    accelerator made for a DeepSpeed launch (faked here: deepspeed is not installed) gets train.batch_size."""
    import types

    from foldnlp import training

    plugin = types.SimpleNamespace(deepspeed_config={"train_micro_batch_size_per_gpu": "auto"})

    class DeepSpeedAccelerator:
        def __init__(self, **kwargs):
            self.state = types.SimpleNamespace(deepspeed_plugin=plugin)

    monkeypatch.setattr(training, "Accelerator", DeepSpeedAccelerator)
    training.make_accelerator(TrainConfig(batch_size=12, precision="fp32"))
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 12
