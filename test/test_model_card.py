"""The model card is generated from the shipped weights' own provenance and never stale."""

import json

import cv2
import pytest
import torch

from semseg_ros.core.weights import save_weights
from semseg_ros.models import create_model
from semseg_ros.training import model_card


def test_card_renders_the_provenance_of_each_file(tmp_path):
    """mIoU, per-class IoU, epochs and the command of a weights file appear in the card."""
    torch.manual_seed(0)
    meta = {'model': 'enet', 'epochs_trained': 7, 'epochs_planned': 10, 'best_epoch': 5,
            'val_miou': 0.4321, 'val_pixel_accuracy': 0.8, 'train_wall_seconds': 7200,
            'val_iou': {'Sky': 0.9, 'Car': 0.55, 'Pole': 0.008}, 'crop': '384x288',
            'batch_size': 8, 'lr': 0.001, 'class_weights': 'mfb012', 'seed': 0,
            'date': '2026-11-22',
            'commands': ['semseg train --model enet ...', 'semseg train --resume r',
                         'semseg train --resume r'], 'torch': '2.13.0',
            'history': [{'epoch': e, 'loss': 1.0 / e, 'val_miou': 0.04 * e if e % 5 == 0
                         else None} for e in range(1, 11)]}
    save_weights(tmp_path / 'enet_camvid.pt', create_model('enet'), 'enet', 11, 'camvid',
                 meta=meta)
    card = model_card.render_card(tmp_path)
    assert '## enet (`enet_camvid.pt`)' in card
    assert '**43.2**' in card and 'best at 5 of 7 trained, 10 planned' in card
    assert '2.0 h' in card and '`semseg train --model enet ...` |' in card
    assert '| command | `semseg train --resume r` (2 times) |' in card  # repeats collapsed
    assert '| val IoU | 90.0 |' in card and '55.0' in card
    assert '**Weak classes** (val IoU below 5 %' in card and 'them): Pole 0.8.' in card
    assert '![Training loss and val mIoU per epoch](training_curves.png)' in card
    assert model_card.main(['--folder', str(tmp_path), '--check']) == 1  # nothing written yet
    assert model_card.main(['--folder', str(tmp_path)]) == 0
    curves = cv2.imread(str(tmp_path / 'training_curves.png'))
    assert curves is not None and curves.shape[1] > curves.shape[0] > 300 and curves.std() > 10
    assert model_card.main(['--folder', str(tmp_path), '--check']) == 0
    (tmp_path / 'training_curves.png').unlink()
    assert model_card.main(['--folder', str(tmp_path), '--check']) == 1
    assert model_card.main(['--folder', str(tmp_path)]) == 0
    save_weights(tmp_path / 'rds_net_camvid.pt', create_model('rds_net'), 'rds_net', 11,
                 'camvid', meta=dict(meta, model='rds_net'))
    assert model_card.main(['--folder', str(tmp_path), '--check']) == 1


def test_shipped_card_matches_the_shipped_weights():
    """The card in the package is what the shipped files say (regenerate it when they change)."""
    assert model_card.main(['--check']) == 0


def _shipped():
    from semseg_ros.core.resources import weights_dir
    return sorted(weights_dir().glob('*_camvid.pt'))


@pytest.mark.parametrize('weights', _shipped(), ids=lambda p: p.stem)
def test_shipped_weights_reproduce_their_val_figures(weights, camvid, tmp_path):
    """``semseg eval`` with the shipped weights gives the val mIoU the card states."""
    from semseg_ros.core.weights import read_weights
    from semseg_ros.training import evaluate
    meta = read_weights(weights)['meta']
    out = tmp_path / 'val.json'
    code = evaluate.main(['--model', meta['model'], '--dataset', 'camvid', '--data-root',
                          str(camvid), '--split', 'val', '--json', str(out)])
    assert code == 0
    figures = json.loads(out.read_text())
    assert figures['images'] == 101
    assert figures['miou'] == pytest.approx(meta['val_miou'], abs=5e-4)
    assert figures['pixel_accuracy'] == pytest.approx(meta['val_pixel_accuracy'], abs=5e-4)


def test_shipped_graphs_are_fresh_and_complete():
    """Every pre-built graph in the package belongs to shipped weights and is current.

    Each comes in pairs (labels, labels + confidence) at a size and precision, and its
    metadata names the shipped weights' digest, so a graph left from older weights or one
    cached there by a benchmark fails here instead of shipping.
    """
    import re
    from semseg_ros.core.backends import graph_metadata, onnx_metadata
    from semseg_ros.core.resources import weights_dir
    from semseg_ros.core.weights import file_digest
    pattern = re.compile(r'(?P<model>\w+)_camvid\.(?P<w>\d+)x(?P<h>\d+)(?P<conf>\.conf)?'
                         r'(?P<int8>\.int8)?\.onnx')
    graphs = sorted(weights_dir().glob('*.onnx'))
    variants = set()
    for graph in graphs:
        match = pattern.fullmatch(graph.name)
        assert match, f'{graph.name}: not a graph name the node looks up'
        weights = weights_dir() / f'{match["model"]}_camvid.pt'
        assert weights.is_file(), f'{graph.name}: no shipped weights for it'
        precision = 'int8' if match['int8'] else 'fp32'
        expected = graph_metadata(match['model'], file_digest(weights), int(match['w']),
                                  int(match['h']), precision)
        assert onnx_metadata(graph).items() >= expected.items(), f'{graph.name} is stale'
        variants.add((match['model'], match['w'], match['h'], precision, bool(match['conf'])))
    for model, width, height, precision, _ in variants:
        for conf in (False, True):
            assert (model, width, height, precision, conf) in variants, \
                f'{model} {width}x{height} {precision}: only one of the graph pair ships'
