"""python -m foldnlp.report: the leaderboard of experiments (run folders) and its plots.

experiments.py reads run folders (CV recomputed from the out-of-fold scores), leaderboard.py builds the tables,
plots.py draws the PNGs, __main__.py is the command line.
"""
