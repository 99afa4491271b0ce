"""Span segmentation (Kaggle Feedback Prize - Evaluating Student Writing 2021, and NER): an essay's words, numbered
from 0 in whitespace order, are tagged with BIO classes ("O", "B-<class>", "I-<class>"), and the predictions of an
essay are zero or more spans (class, words). metrics: the Feedback Prize overlap F1; decoding: word scores to spans,
with per-class minimum lengths and probabilities fit on out-of-fold scores."""
