"""Offline tooling: training, data sets, synthetic people, metrics, evaluation (not the node)."""
