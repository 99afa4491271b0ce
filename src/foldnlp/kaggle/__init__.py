"""Kaggle code-competition submissions that run with the internet off.

build: the code, weights and wheels datasets and the kernel script (bundle.py, wheels.py, metadata.py, leaks.py,
kernel_template.py); local-run: that kernel here, with no network and a fresh environment (localrun.py); budget:
its inference time against the competition's limit (budget.py). `python -m foldnlp.kaggle --help`.
"""
