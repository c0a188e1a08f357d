"""Test set-up: helpers import from this folder; torch uses few threads; a tiny random model."""
import os
import sys

import pytest
import torch

from monoport_ros.core.config import NetworkConfig
from monoport_ros.core.networks import MonoPortNet

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(1)


@pytest.fixture(scope='module')
def tiny_net() -> MonoPortNet:
    """Random weights with about half of the cube inside, so that there is a surface."""
    torch.manual_seed(0)
    net = MonoPortNet(NetworkConfig.preset('small')).eval()
    with torch.no_grad():
        net.surface_mlp.filters[-1].bias.fill_(0.0)
    return net
