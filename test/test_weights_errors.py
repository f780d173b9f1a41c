"""Broken weights files: each refused with the file's name and what is wrong with it.

Never with torch's advice to load with ``weights_only=False``, which would run the file's code.
"""

import collections
import pickle

import numpy as np
import pytest
import torch

from semseg_ros.core.weights import read_weights, save_weights, WeightsError
from semseg_ros.models import create_model


class Payload:
    """A class a weights file must not be able to make the loader build."""


def _write_broken(folder):
    """Return {file name: (path, text the error must contain)} for every kind of bad file."""
    good = save_weights(folder / 'good.pt', create_model('mininet_v2_cpu', num_classes=11),
                        'mininet_v2_cpu', 11, 'camvid')
    data = good.read_bytes()
    files = {
        'empty.pt': (b'', 'is empty (0 bytes)'),
        'text.pt': (b'not a checkpoint at all', 'not a weights file'),
        'pickle.pt': (pickle.dumps({'state_dict': {}}), 'not a weights file'),
        'truncated.pt': (data[:len(data) // 2], 'truncated or corrupt'),
    }
    paths = {}
    for name, (content, expected) in files.items():
        (folder / name).write_bytes(content)
        paths[name] = (folder / name, expected)
    torch.save({'state_dict': collections.OrderedDict(), 'hook': Payload()}, folder / 'code.pt')
    paths['code.pt'] = (folder / 'code.pt', 'would run code')
    torch.save({'format': 'semseg_ros.weights/1', 'array': np.zeros(3)}, folder / 'numpy.pt')
    paths['numpy.pt'] = (folder / 'numpy.pt', 'would run code')
    (folder / 'folder.pt').mkdir()
    paths['folder.pt'] = (folder / 'folder.pt', 'is a folder')
    paths['missing.pt'] = (folder / 'missing.pt', 'not found')
    return paths


def test_each_broken_file_is_named_with_its_problem(tmp_path):
    """One line per file: its path, what is wrong, no torch advice to load unsafely."""
    for name, (path, expected) in _write_broken(tmp_path).items():
        with pytest.raises(WeightsError) as refused:
            read_weights(path)
        message = str(refused.value)
        assert str(path) in message, (name, message)
        assert expected in message, (name, message)
        assert 'weights_only' not in message and '\n' not in message, (name, message)
        assert message.strip() != f'{path}:', (name, message)
