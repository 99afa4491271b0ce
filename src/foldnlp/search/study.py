"""The study of a search: opened (or created) in its database, resumed, run to N trials in total, summarised.

The study is named <experiment name>-<8 hex digits of the space file's sha256>, in
<output_dir>/<name>/search.db (SQLite) unless --storage names another database. Several processes running the same
command against one database share the study (Optuna's distributed mode): trial numbers come from the database, so
run folders never collide. Every running trial records a heartbeat; a trial whose worker died (no heartbeat for
GRACE_S) is failed and retried (up to MAX_RETRIES times) by whichever worker next starts a trial, and one
interrupted with Ctrl-C is retried when the search is run again; a retry continues the dead trial's training from
its saved state.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from foldnlp import artifacts
from foldnlp.config import dump_yaml, load_config
from foldnlp.errors import InputError
from foldnlp.folds import chosen_folds
from foldnlp.provenance import config_sha256, differences, training_config
from foldnlp.search.space import SearchSpace, describe, read_space
from foldnlp.search.trial import RUN_DIR_ATTR, Experiment, TrialSettingsError, read_record, run_trial
from foldnlp.tasks import get_task

log = logging.getLogger(__name__)

HEARTBEAT_S = 30  # a running trial writes a heartbeat to the database this often
GRACE_S = 120  # a RUNNING trial with no heartbeat for this long belongs to a dead worker
# Retries of a trial whose worker died or that was interrupted, in a chain (a trial that keeps killing its worker
# is given up).
MAX_RETRIES = 2
STORAGE_ATTEMPTS = 4  # tries at opening the study's database
TOP = 5  # best trials in the summary
# Pruning starts once this many trials have completed, and never at a trial's first evaluation.
PRUNE_AFTER_TRIALS, PRUNE_FROM_EVALUATION = 3, 2
TPE_STARTUP_TRIALS = 5  # random draws before TPE models the results


@dataclass(frozen=True)
class SearchResult:
    study: str
    storage: str
    summary: str  # printable: state counts, the best trials, where the best config is
    best_config: Path | None  # None while no trial has completed


def run_search(config: Path | None, space_path: Path, n_trials: int, *, folds: list[int] | None = None,
               storage: str | None = None, overrides: list[str] = (), sampler: str = "tpe",
               pruner: str | optuna.pruners.BasePruner = "median", seed: int | None = None,
               progress: bool = True) -> SearchResult:
    """Run the search until its study holds n_trials trials in total (complete, pruned or running in any worker),
    then summarise it and write the best settings as a config."""
    base = load_config(config, overrides)
    task = get_task(base)
    folds = chosen_folds(base.folds.n_folds, folds)
    fold_path = artifacts.fold_file(base.folds.folds_dir, base.folds.scheme)
    if not fold_path.is_file():
        raise InputError(f"fold file {fold_path} does not exist: run `python make_folds.py` with this config first")
    space = read_space(space_path, config, overrides)
    experiment_dir = artifacts.RunPaths.of(base.output_dir, base.name)
    name = f"{base.name}-{space.sha256[:8]}"
    url = storage or _default_storage(experiment_dir)
    _quiet_optuna()
    with _experimental_quiet():
        study = optuna.create_study(storage=_open_storage(url), study_name=name, load_if_exists=True,
                                    direction="maximize" if task.higher_is_better else "minimize",
                                    sampler=_sampler(sampler, seed), pruner=_pruner(pruner))
        _check_same_search(study, base, folds, url)
        experiment = Experiment(config, tuple(overrides), base.name, base.output_dir, tuple(folds), task.metric_name,
                                name, space, progress)
        optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed and queued again
        _retry_interrupted(study)
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        remaining = n_trials - len(study.get_trials(deepcopy=False, states=counted))
        log.info("study %s in %s: %s; %s", name, url, _counts(study),
                 f"running up to {remaining} more (--trials {n_trials} in total)" if remaining > 0
                 else f"it has its {n_trials} trials (--trials counts every finished and running trial)")
        if remaining > 0:
            study.optimize(lambda trial: run_trial(trial, experiment), n_trials=remaining,
                           catch=(TrialSettingsError,), gc_after_trial=True,
                           callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=counted)])
    best = _write_best_config(study, space, config, overrides, base.name, experiment_dir)
    return SearchResult(name, url, summarise(study, space, task.metric_name, best), best)


def summarise(study: optuna.Study, space: SearchSpace, metric: str, best_config: Path | None) -> str:
    """State counts, the TOP best complete trials, and where the best settings were written."""
    complete = list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: -t.value if maximize else t.value)
    lines = [f"study {study.study_name}: {_counts(study)}"]
    if complete:
        lines.append(f"best trials by {metric} ({'higher' if maximize else 'lower'} is better):")
        lines += [f"  trial {t.number:>3}  {metric} {t.value:.4f}  {describe(space.values_of(t.params))}  "
                  f"({t.user_attrs.get(RUN_DIR_ATTR, '?')})" for t in complete[:TOP]]
    if best_config is not None:
        lines.append(f"best settings: {best_config} (train it: python train_fold.py --config {best_config} "
                     "--fold K)")
    return "\n".join(lines)


def _counts(study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    shown = [f"{counts[TrialState.COMPLETE]} complete", f"{counts[TrialState.PRUNED]} pruned",
             f"{counts[TrialState.FAIL]} failed"]
    shown += [f"{counts[s]} {s.name.lower()}" for s in (TrialState.RUNNING, TrialState.WAITING) if counts[s]]
    return f"{len(trials)} trial(s): " + ", ".join(shown)


def _write_best_config(study: optuna.Study, space: SearchSpace, config: Path | None, overrides: list[str],
                       name: str, experiment_dir: artifacts.RunPaths) -> Path | None:
    """The experiment's config with the best trial's settings, named <name>-best, as <experiment>/best.yaml."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    values = space.values_of(best.params)
    cfg = load_config(config, [*overrides, *space.overrides(values), f"name={name}-best"])
    header = (f"# The best settings of search {study.study_name}: trial {best.number}, value {best.value:.6g}\n"
              f"# (python -m foldnlp.search): {config or 'the default config'} with the search's --set values and "
              f"{describe(values)}.\n")
    path = experiment_dir.best_config
    artifacts.atomic_write_text(path, header + dump_yaml(cfg))
    return path


def _check_same_search(study: optuna.Study, base, folds: list[int], url: str) -> None:
    """A study resumed must be the same search: same config (training settings) and folds, so its trials compare."""
    recorded = study.user_attrs
    if "config_sha256" not in recorded:  # a new study (or one opened by a worker at the same moment: same values)
        study.set_user_attr("config_sha256", config_sha256(base))
        study.set_user_attr("config", training_config(base))
        study.set_user_attr("folds", folds)
        return
    if recorded["config_sha256"] != config_sha256(base):
        changed = "; ".join(differences(recorded["config"], training_config(base))) or "(same fields, other hash)"
        raise InputError(f"study {study.study_name} in {url} was started with other settings ({changed}): run it "
                         "with the same config and --set values, or start another search (--set name=...)")
    if recorded["folds"] != folds:
        raise InputError(f"study {study.study_name} in {url} trains folds {recorded['folds']}, not {folds}: pass "
                         f"--folds {' '.join(map(str, recorded['folds']))}, or start another search (--set name=...)")


def _retry_interrupted(study: optuna.Study) -> None:
    """Queue again each trial interrupted (Ctrl-C) in an earlier run whose folder no queued or running trial has
    taken over yet: the retry continues its training (a dead worker's trials are queued by fail_stale_trials)."""
    trials = study.get_trials(deepcopy=False)
    claimed = {t.user_attrs.get(RUN_DIR_ATTR) for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    for trial in trials:
        run_dir = trial.user_attrs.get(RUN_DIR_ATTR)
        if trial.state != TrialState.FAIL or run_dir is None or run_dir in claimed:
            continue
        record = read_record(artifacts.RunPaths(Path(run_dir)))
        if record is not None and record.get("state") == "interrupted":
            retry(study, copy.deepcopy(trial))  # the callback extends the trial's retry history in place


def _default_storage(experiment_dir: artifacts.RunPaths) -> str:
    experiment_dir.root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{experiment_dir.search_db.resolve()}"


def _open_storage(url: str) -> RDBStorage:
    # SQLite locks the whole file per write: wait for other workers instead of failing at once.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    attempt = 0
    while True:
        try:
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            # Workers started together on a new database race to create its tables: the loser finds them made.
            attempt += 1
            if attempt == STORAGE_ATTEMPTS:
                raise InputError(f"--storage {url}: cannot open it as a study database ({err})") from err
            time.sleep(attempt)
        except Exception as err:  # SQLAlchemy's errors for a bad URL or a missing database driver
            raise InputError(f"--storage {url}: cannot open it as a study database ({type(err).__name__}: "
                             f"{err})") from err


def _sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        # constant_liar: a worker treats the others' running trials as poor results, so it does not draw the same
        # settings while they train.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, constant_liar=True)
    raise InputError(f"--sampler {name!r}: expected tpe or random")


def _pruner(pruner: str | optuna.pruners.BasePruner) -> optuna.pruners.BasePruner:
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        # Stops a trial whose best score so far is worse than the median of completed trials at the same evaluation.
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_FROM_EVALUATION)
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise InputError(f"--pruner {pruner!r}: expected median or none")


def _quiet_optuna() -> None:
    """Optuna's own INFO line per trial repeats ours: keep its warnings only, through the logging set-up of the CLI."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


@contextlib.contextmanager
def _experimental_quiet():
    """Heartbeats and their retry callback are marked experimental in Optuna 4.9; they are what resume relies on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        yield
