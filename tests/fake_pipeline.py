"""A stand-in for the engine's pipeline: node tests hand it results themselves."""
from __future__ import annotations


class FakePipeline:
    """Records what the node hands to the engine; results are delivered by the test."""

    workers = 'stage threads'

    def __init__(self, config, on_result):
        self.devices = (config.geometry_device, config.color_device)
        self.arithmetic = (config.precision,) * 2
        self.config, self.on_result = config, on_result
        self.submitted, self.updates, self.closed = [], [], False
        self.stats = {'submitted': 0, 'processed': 0, 'dropped': 0, 'failed': 0}

    def submit(self, rgb, meta, outputs):
        self.submitted.append((rgb, meta, outputs))
        self.stats['submitted'] += 1
        return True

    @property
    def octree_levels(self):
        return (self.updates or [self.config])[-1].localization_levels(self.devices[0])

    def update_config(self, config):
        self.updates.append(config)

    def close(self):
        self.closed = True
