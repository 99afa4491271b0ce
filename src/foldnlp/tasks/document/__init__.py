"""Document classification and regression: one label, several labels or one or more scores per text."""
