"""Hyper-parameter search (python -m foldnlp.search): an Optuna study whose trials are ordinary run folders.

space.py reads and checks the space file; trial.py trains one trial's folds with train_fold; study.py opens the
study in its database, resumes it and reports the best trials.
"""
