"""Span segmentation: label contiguous runs of whitespace words in a document with a class (Kaggle "Feedback Prize
- Evaluating Student Writing" discourse elements, named entities from BIO token files) and score the predicted runs
against the true ones."""
