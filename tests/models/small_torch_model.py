"""A user's model file, as `--model tests/models/small_torch_model.py:build` imports it."""

import torch


def build():
    """A small MLP for 8x8 digit images (n, 1, 8, 8), ten classes."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))


def with_data():
    """The module and its own data (module, (X, Y)): 30 random images, labels 0-9."""
    g = torch.Generator().manual_seed(1)
    return build(), (torch.rand(30, 1, 8, 8, generator=g), torch.randint(0, 10, (30,), generator=g))


def broken():
    raise RuntimeError("the user's factory failed")
