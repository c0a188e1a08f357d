"""
Offline tooling: training, data sets, synthetic people, metrics, evaluation.

The node never imports it.
"""
