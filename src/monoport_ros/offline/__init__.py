"""Offline tooling: training, data sets, synthetic people, metrics, evaluation; the node never imports it."""
