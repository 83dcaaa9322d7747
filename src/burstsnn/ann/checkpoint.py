"""Weights trained elsewhere: a state dict or a Lightning ``.ckpt``, loaded with
``weights_only=True`` into the configured network, every problem one line."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from burstsnn.atomic import sha256_of
from burstsnn.errors import CheckpointError

# The LightningModule that trains our ANNs (classifier.ANNClassifier) keeps the network as `model`.
LIGHTNING_PREFIX = "model."
SHOWN = 3  # names in a message about mismatched keys


def cpu_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s state dict, detached on the CPU, with its ``_metadata``: the module versions
    that some torchvision models need to load it back (MNASNet refuses a state without them)."""
    state = model.state_dict()
    cpu = OrderedDict((name, tensor.detach().cpu()) for name, tensor in state.items())
    cpu._metadata = state._metadata
    return cpu


def load_checkpoint(model: nn.Module, path: Path) -> str:
    """Load the weights at ``path`` into ``model``; returns the file's SHA-256.

    Accepts a state dict (e.g. an ANN cache entry's ``model.pt``) or a Lightning checkpoint
    (its ``state_dict``, with the ``model.`` prefix of the training module taken off).
    CheckpointError for a missing or unreadable file, a truncated or corrupt one, and keys or
    shapes that do not match ``model`` (the first few named)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint={path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"checkpoint={path} holds objects that weights_only=True refuses "
                              f"({str(error).splitlines()[0]}); save a state_dict instead") from None
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f"checkpoint={path} is truncated or not a PyTorch checkpoint "
                              f"({str(error).splitlines()[0]})") from None
    state = _state_dict(loaded, path)
    _check_matches(model.state_dict(), state, path)
    model.load_state_dict(state)
    return sha256_of(path)


def _state_dict(loaded: object, path: Path) -> dict[str, Tensor]:
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):  # Lightning
        loaded = loaded["state_dict"]
        if loaded and all(key.startswith(LIGHTNING_PREFIX) for key in loaded):
            consume_prefix_in_state_dict_if_present(loaded, LIGHTNING_PREFIX)  # module versions too
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointError(f"checkpoint={path} holds no state dict (a mapping of names to tensors)")
    return loaded


def _check_matches(expected: dict[str, Tensor], state: dict[str, Tensor], path: Path) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (the model has {tuple(expected[k].shape)})"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = [f"{label} {', '.join(keys[:SHOWN])}{' …' if len(keys) > SHOWN else ''} ({len(keys)} in all)"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes:", shapes))
                if keys]
    if problems:
        raise CheckpointError(f"checkpoint={path} does not fit the configured model: {'; '.join(problems)}")
