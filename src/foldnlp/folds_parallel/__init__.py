"""Folds in parallel (python -m foldnlp.folds_parallel): every fold of an experiment trained by train_fold.py in a
process of its own, one fold per slot of devices at a time.

devices.py reads the --devices spec into slots and gives each slot's environment; launcher.py starts one fold's
process (train_fold.py, or torchrun over several GPUs) with its log; scheduler.py queues the folds over the slots
and stops them on Ctrl-C; train_folds.py checks the run, then trains and reports each fold.
"""
