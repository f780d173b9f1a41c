"""Weights files: one format for trained checkpoints and shipped weights.

A weights file is a ``torch.save``'d dict of plain types and tensors, so it loads with
``torch.load(..., weights_only=True)``::

    {'format': 'semseg_ros.weights/1', 'model': 'mininet_v2_cpu', 'num_classes': 11,
     'class_set': 'camvid', 'state_dict': {...}, 'meta': {...}}

Training checkpoints (``last.pt``/``best.pt``) use the same keys and add optimizer, scheduler,
epoch and RNG state, so a checkpoint is also a valid weights file.
"""

import hashlib
import io
import os
from pathlib import Path
import pickle
import tempfile
from typing import Any, Dict, Optional, Union
import warnings

import torch
from torch import nn

FORMAT = 'semseg_ros.weights/1'
# torch.save writes a zip archive.
_ZIP_MAGIC = b'PK\x03\x04'


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the model asked for."""


def save_weights(path: Union[str, Path], model: nn.Module, model_name: str, num_classes: int,
                 class_set: str, meta: Optional[Dict[str, Any]] = None,
                 extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write a weights file atomically (a temporary file renamed into place).

    Args:
        path: Destination file.
        model: The network (its ``state_dict`` is saved; DDP wrappers are unwrapped).
        model_name: Registry name of the network.
        num_classes: Number of output classes.
        class_set: Class-set name or YAML path the classes follow.
        meta: Plain, JSON-like facts (epochs, val mIoU, date...) kept with the weights.
        extra: More top-level entries (training state in checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, 'module', model)
    payload = {'format': FORMAT, 'model': model_name, 'num_classes': int(num_classes),
               'class_set': str(class_set),
               'state_dict': {k: v.detach().cpu() for k, v in module.state_dict().items()},
               'meta': dict(meta or {})}
    payload.update(extra or {})
    # Serialized in memory first: written to a file, the archive records that file's (random,
    # temporary) name, so the same weights would give other bytes and another digest.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    handle, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.part', dir=path.parent)
    try:
        with os.fdopen(handle, 'wb') as stream:
            stream.write(buffer.getbuffer())
        # mkstemp makes the file private (0600); weights are shipped and shared: honour umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_weights(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a weights file safely (``weights_only=True``) and check its format.

    Raises:
        WeightsError: The file is missing, unreadable or not a semseg_ros weights file.
    """
    path = Path(path)
    payload = _load_safely(path)
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise WeightsError(f'{path}: not a semseg_ros weights file (expected format {FORMAT!r}; '
                           'train one with `semseg train`)')
    return payload


def _load_safely(path: Path) -> Any:
    """Return ``torch.load(path, weights_only=True)``; raise WeightsError saying what is wrong.

    torch's own messages are not passed on: some are empty, and some advise loading with
    ``weights_only=False``, which would run whatever code the file holds.
    """
    if path.is_dir():
        raise WeightsError(f'{path}: is a folder, not a weights file')
    if not path.is_file():
        raise WeightsError(f'weights file not found: {path}')
    try:
        with open(path, 'rb') as stream:
            head = stream.read(4)
    except OSError as error:
        raise WeightsError(f'{path}: cannot open the weights file ({error.strerror})') from None
    if not head:
        raise WeightsError(f'{path}: the weights file is empty (0 bytes)')
    if head != _ZIP_MAGIC:
        raise WeightsError(f'{path}: not a weights file (a torch.save zip archive starts with '
                           f'{_ZIP_MAGIC.hex(" ")}, this file with {head.hex(" ")})')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch warns about pickle protocols
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            f'{path}: holds Python objects other than tensors and plain values; refused, since '
            'loading them would run code from the file (write weights with `semseg train` or '
            'semseg_ros.core.weights.save_weights)') from None
    except Exception as error:  # torch raises RuntimeError and others for a broken archive
        raise WeightsError(f'{path}: the weights file is truncated or corrupt (its zip archive '
                           f'cannot be read: {type(error).__name__})') from None


def load_weights(model: nn.Module, path: Union[str, Path], model_name: str,
                 num_classes: int) -> Dict[str, Any]:
    """Load a weights file into ``model`` after checking it was trained for it.

    Returns:
        The file's payload (``meta``, ``class_set``...).

    Raises:
        WeightsError: Missing file, another model's weights, a different class count, or
            tensors that do not fit; the message says which and what was expected.
    """
    payload = read_weights(path)
    if payload.get('model') != model_name:
        raise WeightsError(f'{path}: weights are for model {payload.get("model")!r}, '
                           f'expected {model_name!r}')
    if int(payload.get('num_classes', -1)) != int(num_classes):
        raise WeightsError(f'{path}: weights have {payload.get("num_classes")} classes, '
                           f'expected {num_classes}')
    try:
        getattr(model, 'module', model).load_state_dict(payload['state_dict'])
    except (KeyError, RuntimeError) as error:
        raise WeightsError(f'{path}: tensors do not fit {model_name}: {error}') from error
    return payload


def load_matching_weights(model: nn.Module, path: Union[str, Path],
                          model_name: str) -> Dict[str, Any]:
    """Start ``model`` from a weights file of the same network, for fine-tuning.

    Every tensor whose name and shape fit is copied; the others (the classifier, when the
    file was trained on another class set) keep the model's fresh initialisation.

    Returns:
        ``{'payload': ..., 'loaded': [names], 'skipped': [names]}``.

    Raises:
        WeightsError: Missing or unreadable file, weights of another network, or a file of
            which not a single tensor fits.
    """
    payload = read_weights(path)
    if payload.get('model') != model_name:
        raise WeightsError(f'{path}: weights are for model {payload.get("model")!r}, '
                           f'expected {model_name!r} (fine-tuning starts from the same network)')
    module = getattr(model, 'module', model)
    own = module.state_dict()
    stored = payload.get('state_dict', {})
    fitting = {name: tensor for name, tensor in stored.items()
               if name in own and tuple(own[name].shape) == tuple(tensor.shape)}
    if not fitting:
        raise WeightsError(f'{path}: no tensor fits {model_name}')
    module.load_state_dict(fitting, strict=False)
    return {'payload': payload, 'loaded': sorted(fitting),
            'skipped': sorted(name for name in own if name not in fitting)}


def file_digest(path: Union[str, Path]) -> str:
    """Return the sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def state_digest(module: nn.Module) -> str:
    """Return the sha256 hex digest of a module's state: names, types, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b'')
    return digest.hexdigest()


def weights_digest(path: Optional[Union[str, Path]], module: nn.Module) -> str:
    """Return a weights file's sha256, or ``untrained-`` and the state digest without one.

    An untrained network is seeded (:data:`~semseg_ros.core.segmenter.UNTRAINED_SEED`), so
    every process has the same state and digest, and shares its graphs.
    """
    return f'untrained-{state_digest(module)}' if path is None else file_digest(path)
