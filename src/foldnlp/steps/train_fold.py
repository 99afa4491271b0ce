"""Train one fold: split by the fold file, fit, keep the best checkpoint, write out-of-fold outputs and metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from accelerate.utils import set_seed

from foldnlp import artifacts, processes, test_outputs
from foldnlp.config import ExperimentConfig, dump_yaml, to_dict
from foldnlp.errors import InputError
from foldnlp.folds import read_folds
from foldnlp.inference import predict
from foldnlp.modeling import load_tokenizer
from foldnlp.optimizers import check_available
from foldnlp.provenance import mismatch, run_provenance
from foldnlp.tasks import get_task
from foldnlp.tracking import Tracker
from foldnlp.training import Evaluation, StateSaving, fit, make_accelerator
from foldnlp.training_state import read_state_json

log = logging.getLogger(__name__)


def train_fold(cfg: ExperimentConfig, fold: int, *, overwrite: bool = False, resume: bool = False,
               progress: bool = True, on_evaluation: Callable[[int, float], None] | None = None) -> dict:
    """Train fold `fold` of experiment cfg; returns the metrics written to fold<k>/metrics.json.

    A finished fold is kept unless overwrite; resume continues an unfinished fold from its saved training state
    (and returns a finished fold's metrics untouched), so one loop over all folds with resume picks up after a crash.
    on_evaluation(step, score) is called after each evaluation (training.fit); what it raises stops the fold there,
    unfinished (no metrics.json), and propagates.
    In a launch of several processes (torchrun, accelerate launch) every process calls it: they train together
    (DDP) and share each evaluation; process 0 alone deletes, writes and tracks, the others waiting for it where
    they read (processes.py). train.batch_size is per process.
    """
    paths = artifacts.RunPaths.of(cfg.output_dir, cfg.name)
    task = get_task(cfg)
    # An optimizer this machine cannot run fails here, before any data is read or a finished fold is touched.
    check_available(cfg.train.optimizer, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    fold_path = artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme)
    if not fold_path.is_file():
        raise InputError(f"fold file {fold_path} does not exist: run `python make_folds.py` with this config first")
    seed = cfg.train.seed + fold
    provenance = run_provenance(cfg, fold_path, seed, task.training_files())
    if paths.metrics(fold).is_file() and not overwrite:
        if resume:
            finished = json.loads(paths.metrics(fold).read_text(encoding="utf-8"))
            why = _differs(finished, provenance)
            if why:  # keeping it would mix two configs in one experiment's CV
                raise InputError(f"fold {fold} of {paths.root} already finished, but trained differently ({why}): "
                                 "pass --overwrite to train it again with this config, or give this run its own "
                                 "name (--set name=...)")
            log.info("fold %d of %s already finished; nothing to resume", fold, paths.root)
            return finished
        raise InputError(f"fold {fold} of {paths.root} already finished ({paths.metrics(fold)}); "
                         "pass --overwrite to train it again")
    # Made first: in a multi-process launch it starts the process group that the waits below use.
    accelerator = make_accelerator(cfg.train)
    launch = processes.of_launch()
    train, valid = split_fold(cfg, task, fold, fold_path)
    # Settings learnt from the data (classes, target scaling) are filled in here and saved with the weights; the
    # provenance above is of the config as given, so every fold of an experiment records the same one.
    task = task.with_training_data(pd.concat([train, valid], ignore_index=True), train)
    cfg = task.cfg
    extra = task.extra_training_examples(set(valid["id"]))
    if extra is not None:
        train = pd.concat([train, extra], ignore_index=True)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    # Settings that cannot cut these texts into windows fail here, before a saved state or a finished fold is
    # discarded (--overwrite) and before any model is loaded or any bar drawn.
    task.check_windows(tokenizer, pd.concat([train, valid], ignore_index=True))
    if launch.is_main:  # a kill in the middle of a state save left its previous copy aside: put it back, once
        artifacts.recover_dir(paths.training_state(fold))
    launch.wait()
    resume = _check_saved_state(paths, fold, provenance, launch.count, overwrite=overwrite, resume=resume)
    check_same_experiment(paths, fold, provenance)
    if overwrite and launch.is_main:  # the old fold's outputs must not outlive it half-replaced if this run is killed
        artifacts.remove_dir(paths.training_state(fold))
        paths.metrics(fold).unlink(missing_ok=True)
        test_outputs.forget_fold(paths, fold)
    by = cfg.folds.stratify_by  # the mix of the stratification column shows what external data added
    mix = f" ({by}: {train[by].value_counts().to_dict()})" if by and by in train else ""
    log.info("fold %d: %d training rows%s, %d validation rows", fold, len(train), mix, len(valid))

    set_seed(seed)
    train_windows = task.training_set(task.windows(tokenizer, train, with_targets=True))
    valid_windows = task.windows(tokenizer, valid, with_targets=False)
    model = task.load_model(cfg.model.name_or_path, cfg.model)
    if launch.is_main:
        artifacts.atomic_write_text(paths.config, dump_yaml(cfg))
    launch.wait()  # the discarded outputs are gone before any process goes on

    def evaluate(model) -> Evaluation:  # on every process: each predicts its share and decodes them all
        outputs = predict(model, valid_windows.input_ids, pad_id=tokenizer.pad_token_id,
                          batch_size=cfg.runtime.eval_batch_size, precision=_precision(accelerator),
                          outputs=task.outputs, desc="eval", progress=progress, processes=launch)
        scores = task.to_scores(valid, valid_windows, outputs)
        predictions = task.decode(valid, scores)
        return Evaluation(task.score(valid, predictions), (scores, predictions))

    def save_best(model, evaluation: Evaluation) -> None:  # fit calls it on process 0 only
        save_checkpoint(paths.model_dir(fold), model, tokenizer, cfg)

    tracker = Tracker(cfg.tracking.wandb if launch.is_main else "disabled", cfg.tracking.project, cfg.name, fold,
                      to_dict(cfg), paths.fold_dir(fold))
    started = time.perf_counter()
    result = fit(model, train_windows, cfg.train, accelerator=accelerator, pad_id=tokenizer.pad_token_id,
                 loss_fn=task.loss, evaluate=evaluate, save_best=save_best, head_prefixes=task.head_prefixes,
                 seed=seed, metric_name=task.metric_name, higher_is_better=task.higher_is_better,
                 log_metrics=tracker.log, progress=progress,
                 state=StateSaving(paths.training_state(fold), provenance, resume, cfg.runtime.save_every_steps),
                 on_evaluation=on_evaluation)
    payload = result.best_payload
    if payload is None:  # resumed after the best evaluation: recompute its outputs from the saved checkpoint
        best = evaluate(task.load_model(str(artifacts.checked_model_dir(paths.model_dir(fold)))).to(accelerator.device))
        if best.score != result.best_score:
            log.warning("fold %d: the saved best checkpoint scores %.6f, the run recorded %.6f", fold, best.score,
                        result.best_score)
        payload = best.payload
    metrics = {"fold": fold, "metric": task.metric_name, "higher_is_better": task.higher_is_better,
               task.metric_name: result.best_score, "best_step": result.best_step,
               "stopped_early": result.stopped_early, "train_seconds": round(time.perf_counter() - started, 1),
               "train_rows": len(train), "valid_rows": len(valid),
               # Windows and steps give the report its windows per second: train_windows × steps / steps_per_epoch
               "train_windows": result.windows_per_epoch, "steps": result.steps,
               "steps_per_epoch": result.steps_per_epoch, "history": result.history,
               "nonfinite_steps": result.nonfinite_steps, "reverts": result.reverts, "lr_scale": result.lr_scale,
               "events": result.events, "processes": launch.count, "provenance": provenance}
    if launch.is_main:
        scores, predictions = payload
        artifacts.save_scores(paths.oof_scores(fold), scores)
        artifacts.atomic_write_csv(paths.oof_predictions(fold), task.with_truth(valid, predictions))
        artifacts.atomic_write_json(paths.metrics(fold), metrics)  # written last: marks the fold as finished
        artifacts.remove_dir(paths.training_state(fold))
        tracker.finish({f"best_{task.metric_name}": result.best_score, "best_step": result.best_step,  # fold's CV
                        "train_seconds": metrics["train_seconds"], "nonfinite_steps": result.nonfinite_steps,
                        "reverts": result.reverts, "lr_scale": result.lr_scale})
    launch.wait()  # every process returns once the fold is finished on disk
    return metrics  # the summary line is train_fold.py's to print, once


def _check_saved_state(paths: artifacts.RunPaths, fold: int, provenance: dict, n_processes: int, *,
                       overwrite: bool, resume: bool) -> bool:
    """Whether to resume: a saved state of an unfinished run is continued only on request, only when it belongs to
    this config and data, and only in a launch of as many processes as saved it (the global batch is
    train.batch_size × processes); overwrite discards it (the caller deletes it)."""
    folder = paths.training_state(fold)
    if not folder.exists():
        if resume:
            log.info("fold %d: no saved training state in %s; starting from the beginning", fold, folder)
        return False
    if overwrite:
        return False
    saved = read_state_json(folder)
    step = saved["position"]["step"]
    if not resume:
        raise InputError(f"fold {fold} of {paths.root} has a saved training state at step {step} from an unfinished "
                         f"run ({folder}): pass --resume to continue it or --overwrite to start again")
    why = mismatch(saved["provenance"], provenance)
    if why:
        raise InputError(f"cannot resume fold {fold} from {folder}: it was saved by a different run ({why}); "
                         "pass --overwrite to start again")
    saved_processes = saved["position"].get("processes", 1)
    if saved_processes != n_processes:
        raise InputError(f"cannot resume fold {fold} from {folder}: it was saved by a launch of {saved_processes} "
                         f"process(es), this one has {n_processes} (the global batch is train.batch_size × "
                         f"processes): launch it with {saved_processes} (torchrun --nproc_per_node "
                         f"{saved_processes}), or pass --overwrite to start again")
    return True


def check_same_experiment(paths: artifacts.RunPaths, fold: int, provenance: dict) -> None:
    """An experiment's folds must share one config, fold file and data, or their CV means nothing."""
    for other in paths.trained_folds():
        if other == fold:
            continue
        why = _differs(json.loads(paths.metrics(other).read_text(encoding="utf-8")), provenance)
        if why:
            raise InputError(f"fold {other} of {paths.root} was trained differently ({why}); all folds of an "
                             "experiment must share config, folds and data: give this run its own name "
                             f"(--set name=...) or retrain fold {other} with --overwrite")


def _differs(metrics: dict, provenance: dict) -> str:
    """'' when a finished fold's metrics.json records the same training as `provenance`, else what differs."""
    recorded = metrics.get("provenance")
    return mismatch(recorded, provenance) if recorded else "it has no provenance record"


def split_fold(cfg: ExperimentConfig, task, fold: int, fold_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, validation rows) of one fold; data.max_train_examples caps the training rows."""
    frame = task.read_train()
    folds = read_folds(fold_path, frame["id"])
    if fold not in set(folds):
        raise InputError(f"--fold {fold}: {fold_path} has folds {sorted(set(folds))}")
    is_valid = (frame["id"].map(folds) == fold).to_numpy()
    train = frame[~is_valid].reset_index(drop=True)
    if cfg.data.max_train_examples is not None:
        train = train.head(cfg.data.max_train_examples)
    return train, frame[is_valid].reset_index(drop=True)


def save_checkpoint(model_dir: Path, model, tokenizer, cfg: ExperimentConfig) -> None:
    """Weights (safetensors), tokenizer, model config and the resolved experiment config, swapped in atomically."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / artifacts.CONFIG_BESIDE_WEIGHTS).write_text(dump_yaml(cfg), encoding="utf-8")

    artifacts.atomic_write_dir(model_dir, fill)


def _precision(accelerator) -> str:
    return {"no": "fp32"}.get(accelerator.mixed_precision, accelerator.mixed_precision)

