"""The four stages of a competition week, each a function of a config: make folds, train a fold, infer, ensemble."""
