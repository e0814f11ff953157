"""Demo assets: the shipped base model and the per-site domain corpora."""
