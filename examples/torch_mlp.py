"""A PyTorch model for the command line (docs/models.md):

    gdstab critical-lr --model examples/torch_mlp.py:build --data digits --samples 200 --objective mse

gdstab imports this file (its code runs) and calls build(); --data digits gives 8x8 images
(n, 1, 8, 8) with labels 0-9, --objective mse one-hot targets.
"""

import torch


def build():
    """An MLP for 8x8 digit images: Flatten, 64 -> 32 (GELU) -> 10."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.GELU(), torch.nn.Linear(32, 10))
