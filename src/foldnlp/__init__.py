"""foldnlp: k-fold fine-tuning and ensembled inference of Hugging Face transformers for Kaggle NLP."""

__version__ = "0.1.0"
