"""The model card is generated from the shipped weights' own provenance and never stale."""

import json
from pathlib import Path

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


def test_card_says_the_machine_and_arithmetic_of_each_stretch_of_epochs(tmp_path):
    """A run resumed across sessions: the card joins sessions alike, leaves out those that
    trained nothing, and names the machine and the precision/format of each epoch range."""
    cpu = '2-core CPU (AMD EPYC)'
    sessions = [
        {'from_epoch': 0, 'machine': cpu, 'world_size': 1, 'amp': 'none',
         'channels_last': True},
        {'from_epoch': 120, 'machine': cpu, 'world_size': 1, 'amp': 'none',
         'channels_last': True},
        {'from_epoch': 290, 'machine': cpu, 'world_size': 1, 'amp': 'bf16',
         'channels_last': True},
        {'from_epoch': 290, 'machine': cpu, 'world_size': 1, 'amp': 'none',
         'channels_last': False},  # stopped before its first epoch: trained nothing
        {'from_epoch': 290, 'machine': 'NVIDIA H100 GPU on a 16-core CPU (AMD EPYC)',
         'world_size': 2, 'amp': 'bf16', 'channels_last': True},
        {'from_epoch': 1500, 'machine': cpu, 'world_size': 1, 'amp': 'bf16',
         'channels_last': True}]  # the export, after the last epoch
    meta = {'model': 'enet', 'epochs_trained': 1500, 'epochs_planned': 1500, 'best_epoch': 1400,
            'val_miou': 0.7, 'train_wall_seconds': 36000, 'date': '2026-12-07',
            'commands': ['semseg train --model enet ...'], 'sessions': sessions}
    save_weights(tmp_path / 'enet_camvid.pt', create_model('enet'), 'enet', 11, 'camvid',
                 meta=meta)
    card = model_card.render_card(tmp_path)
    assert '| training wall time | 10.0 h |' in card
    assert ('| machine | 2-core CPU (AMD EPYC): epochs 1–290; 2 x NVIDIA H100 GPU on a '
            '16-core CPU (AMD EPYC): epochs 291–1500 |') in card
    assert ('| arithmetic | fp32, channels-last: epochs 1–290; bf16, channels-last: epochs '
            '291–1500 |') in card
    # Sessions from before runs recorded these: said so, not guessed.
    sessions[1:] = [dict(sessions[1], machine=None, amp=None)]
    again = tmp_path / 'again'
    again.mkdir()
    save_weights(again / 'enet_camvid.pt', create_model('enet'), 'enet', 11, 'camvid',
                 meta=meta)
    card = model_card.render_card(again)
    assert ('| machine | 2-core CPU (AMD EPYC): epochs 1–120; a machine not recorded: epochs '
            '121–1500 |') in card
    assert '| arithmetic | fp32, channels-last: epochs 1–120; not recorded: epochs 121–1500 |' \
        in card


@pytest.mark.parametrize('recipe, said', [
    ({'lr_schedule': 'poly', 'lr_end': 1e-05, 'poly_power': 0.9, 'augment': 'full',
      'scale_range': [0.5, 2.0]},
     'Adam lr 0.001 → 1e-05 polynomial (power 0.9), weight decay 0.0002, augmentation full '
     '(scales 0.5–2.0), class weights'),
    ({'lr_schedule': 'plateau', 'lr_end': 1e-06, 'plateau_factor': 0.5,
      'plateau_patience': 10, 'augment': 'flip-translate'},
     'Adam lr 0.001, x 0.5 after 10 epochs of stalled loss, down to 1e-06, weight decay '
     '0.0002, augmentation flip-translate'),
    ({'lr_schedule': 'step', 'step_epochs': 100, 'step_factor': 0.1, 'augment': 'none'},
     'Adam lr 0.001, x 0.1 every 100 epochs, weight decay 0.0002, augmentation none'),
])
def test_card_says_the_rate_schedule_and_augmentation(recipe, said, tmp_path):
    """The recipe row names each schedule with its settings, the weight decay and the
    augmentation (files from before the recipe was stored keep the short row)."""
    meta = {'model': 'enet', 'crop': '480x360', 'batch_size': 10, 'lr': 0.001,
            'class_weights': 'enet', 'seed': 0,
            'recipe': {'weight_decay': 0.0002, **recipe}}
    save_weights(tmp_path / 'enet_camvid.pt', create_model('enet'), 'enet', 11, 'camvid',
                 meta=meta)
    assert f'| recipe | crop 480x360, batch 10, {said}' in model_card.render_card(tmp_path)


def test_shipped_card_matches_the_shipped_weights():
    """The card in the package is what the shipped files say (regenerate it when they change)."""
    assert model_card.main(['--check']) == 0


def _shipped():
    from semseg_ros.core.resources import weights_dir
    return sorted(weights_dir().glob('*_camvid.pt'))


@pytest.mark.slow
@pytest.mark.parametrize('weights', _shipped(), ids=lambda p: p.stem)
def test_shipped_weights_reproduce_their_val_figures(weights, camvid, tmp_path):
    """``semseg eval`` with the shipped weights gives the val mIoU the card states."""
    from semseg_ros.core.weights import read_weights
    from semseg_ros.commands import eval as evaluate
    meta = read_weights(weights)['meta']
    out = tmp_path / 'val.json'
    code = evaluate.main(['--model', meta['model'], '--dataset', 'camvid', '--data-root',
                          str(camvid), '--split', 'val', '--json', str(out)])
    assert code == 0
    figures = json.loads(out.read_text())
    assert figures['images'] == 101
    assert figures['miou'] == pytest.approx(meta['val_miou'], abs=5e-4)
    assert figures['pixel_accuracy'] == pytest.approx(meta['val_pixel_accuracy'], abs=5e-4)


def test_repository_tracks_no_derived_files():
    """The clone holds sources, weights and samples only: graphs are built on first use.

    ONNX and INT8 graphs are derived from the shipped weights (the node exports them into its
    cache), training checkpoints and run folders are not shipped, and the tracked tree stays
    light.
    """
    import subprocess
    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(['git', 'ls-files', '-z'], cwd=root, capture_output=True,
                            check=True).stdout.decode().split('\0')
    tracked = [name for name in listed if name]
    derived = [name for name in tracked
               if name.endswith(('.onnx', '.engine', '.ckpt'))
               or Path(name).name in ('last.pt', 'best.pt')
               or name.split('/')[0] in ('training_state', 'runs', 'demo_out')]
    assert not derived, f'derived files are tracked: {derived}'
    size = sum((root / name).stat().st_size for name in tracked if (root / name).is_file())
    assert size < 15 * 2 ** 20, f'the tracked tree holds {size / 2 ** 20:.1f} MiB'


def test_card_names_no_machine_paths():
    """Commands recorded with one machine's folders are shown with placeholders."""
    recorded = 'semseg train --data-root /srv/data/camvid --epochs 3 --out /home/me/runs/enet'
    assert model_card.portable_command(recorded) == \
        'semseg train --data-root DATA_ROOT --epochs 3 --out RUNS/enet'
    assert '/work/' not in model_card.render_card(model_card.weights_dir())
