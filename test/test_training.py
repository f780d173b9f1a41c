"""Training and evaluation end to end on real CamVid frames with the real mininet_v2_cpu.

Runs are small (a handful of frames, downscaled) so the module stays fast on two shared
cores; the shipped weights come from the long run, not from here.
"""

import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from semseg_ros import cli
from semseg_ros.core.bench import cpu_model
from semseg_ros.core.metrics import ConfusionMatrix
from semseg_ros.core.weights import load_weights, read_weights
from semseg_ros.data.datasets import build_dataset
from semseg_ros.models import create_model
from semseg_ros.training import progress
from semseg_ros.training.engine import evaluate_model
from semseg_ros.training.graph_step import GraphedStep, make_capturable, portable_state_dict
from semseg_ros.training.losses import (
    class_weights, distillation_loss, enet_weights, median_frequency_weights, SegmentationLoss)
from semseg_ros.training.train import export_best, fitted_epochs

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = 'mininet_v2_cpu'
# The learning run: 6 real frames at quarter size, full-frame crops, 30 single-step epochs.
LEARN_ARGS = ['--limit', '6', '--resize', '120x90', '--crop', '120x88', '--batch-size', '6',
              '--epochs', '30', '--lr', '3e-3', '--val-split', 'train', '--val-every', '10',
              '--no-augment']
# Tiny runs for resume and DDP: 4 frames at 64x48, 2 steps per epoch.
TINY_ARGS = ['--limit', '4', '--resize', '64x48', '--crop', '64x48', '--batch-size', '2',
             '--val-every', '2']


@pytest.fixture(autouse=True)
def one_thread():
    """Run torch single-threaded (the cores are shared) and restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(*args: str) -> int:
    return cli.main(['train', '--model', MODEL, '--threads', '1', '--no-progress', *args])


@pytest.fixture(scope='module')
def learned_run(camvid, tmp_path_factory):
    """A run folder after the learning run (shared by the tests that need trained weights)."""
    run_dir = tmp_path_factory.mktemp('learn') / 'run'
    assert _train('--data-root', str(camvid), '--out', str(run_dir), *LEARN_ARGS) == 0
    return run_dir


def _history(run_dir: Path):
    return [json.loads(line) for line in (run_dir / 'log.jsonl').read_text().splitlines()]


def test_class_weights_by_hand():
    """mfb012 and ENet weights equal the formulas worked out by hand."""
    pixels = np.array([600, 300, 100, 0])
    image_pixels = np.array([1000, 1000, 500, 0])
    # frequencies 0.6, 0.3, 0.2 -> median 0.3
    np.testing.assert_allclose(median_frequency_weights(pixels, image_pixels, 0.12),
                               [0.5 ** 0.12, 1.0, 1.5 ** 0.12, 1.0])
    np.testing.assert_allclose(enet_weights(pixels),
                               [1 / np.log(1.62), 1 / np.log(1.32), 1 / np.log(1.12), 1.0])
    assert class_weights('none', pixels, image_pixels) is None
    with pytest.raises(ValueError, match='mfb012, enet, none'):
        class_weights('median', pixels, image_pixels)


def test_loss_matches_cross_entropy_and_survives_all_void():
    """The loss is weighted cross-entropy; a batch of void pixels gives 0, not NaN."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=generator, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 5), generator=generator)
    labels[0, 0] = 255
    weights = np.array([0.5, 1.0, 2.0])
    expected = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32),
                                         ignore_index=255)(logits, labels)
    loss = SegmentationLoss(weights, 255)(logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    void = SegmentationLoss(weights, 255)(logits, torch.full_like(labels, 255))
    assert void.item() == 0.0
    void.backward()
    assert torch.isfinite(logits.grad).all()


def test_training_learns_real_frames(learned_run, camvid):
    """The loss falls and training-frame mIoU rises far above a chance predictor's."""
    history = _history(learned_run)
    assert [h['epoch'] for h in history] == list(range(1, 31))
    assert history[-1]['loss'] < 0.5 * history[0]['loss']
    assert history[-1]['lr'] == 0.0  # polynomial decay ends at zero
    # A uniform random guess has expected IoU_c = (p_c/K) / (p_c + 1/K - p_c/K).
    dataset = build_dataset('camvid', camvid, 'train', resize=(120, 90))
    dataset.pairs = dataset.pairs[:6]
    dataset.validate()
    share = dataset.label_statistics()[0] / dataset.label_statistics()[0].sum()
    k = dataset.num_classes
    chance = float(np.mean([(p / k) / (p + 1 / k - p / k) for p in share if p > 0]))
    final = history[-1]['val_miou']
    assert final > 4 * chance, f'mIoU {final:.3f} vs chance {chance:.3f}'
    assert final > 0.15
    assert sorted(p.name for p in learned_run.iterdir()) == \
        ['best.pt', 'curves.png', 'last.pt', 'log.csv', 'log.jsonl', 'run.json']
    curves = cv2.imread(str(learned_run / 'curves.png'))
    assert curves is not None and curves.shape[1] > curves.shape[0] > 300
    last = read_weights(learned_run / 'last.pt')  # weights_only=True load
    assert last['epoch'] == 30 and last['model'] == MODEL and 'optimizer' in last
    best = read_weights(learned_run / 'best.pt')
    assert best['meta']['val_miou'] == max(h['val_miou'] for h in history if h['val_miou'])
    csv_lines = (learned_run / 'log.csv').read_text().splitlines()
    assert csv_lines[0] == 'epoch,loss,lr,val_miou,val_pixel_accuracy,seconds'
    assert len(csv_lines) == 31


def test_polynomial_decay_ends_at_lr_end(camvid, tmp_path):
    """--lr-end sets the floor the polynomial decay reaches on the last step (the papers'
    1e-3 -> 1e-5), and the run keeps it."""
    run_dir = tmp_path / 'run'
    assert _train('--data-root', str(camvid), *TINY_ARGS, '--epochs', '2', '--lr', '1e-3',
                  '--lr-end', '1e-5', '--out', str(run_dir)) == 0
    lrs = [h['lr'] for h in _history(run_dir)]
    # After 2 of 4 steps: 1e-5 + (1e-3 - 1e-5) * 0.5 ** 0.9.
    assert lrs[0] == pytest.approx(1e-5 + 0.99e-3 * 0.5 ** 0.9)
    assert lrs[1] == pytest.approx(1e-5)
    assert json.loads((run_dir / 'run.json').read_text())['args']['lr_end'] == 1e-5


def test_resume_equals_uninterrupted_run(camvid, tmp_path):
    """Stopping after epochs 1 and 2 and resuming gives bit-identical weights and logs."""
    data = ['--data-root', str(camvid), *TINY_ARGS, '--epochs', '3']
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    assert _train(*data, '--out', str(straight)) == 0
    assert _train(*data, '--out', str(stopped), '--stop-after', '1') == 0
    assert read_weights(stopped / 'last.pt')['epoch'] == 1
    # A resumed session may change the worker count without changing the results.
    assert cli.main(['train', '--resume', str(stopped), '--stop-after', '2', '--workers', '1',
                     '--no-progress']) == 0
    assert cli.main(['train', '--resume', str(stopped), '--no-progress']) == 0
    a, b = read_weights(straight / 'last.pt'), read_weights(stopped / 'last.pt')
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, tensor in a['state_dict'].items():
        assert torch.equal(tensor, b['state_dict'][key]), key
    for key, state in a['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(value, b['optimizer']['state'][key][name]), (key, name)
    assert a['scheduler']['last_epoch'] == b['scheduler']['last_epoch'] == 6
    assert a['best_epoch'] == b['best_epoch']

    def without_time(history):
        return [{k: v for k, v in h.items() if k != 'seconds'} for h in history]
    assert without_time(_history(straight)) == without_time(_history(stopped))
    sessions = json.loads((stopped / 'run.json').read_text())['sessions']
    assert [s['from_epoch'] for s in sessions] == [0, 1, 2]


def test_resume_may_change_precision_and_format_and_says_so(camvid, tmp_path, capsys):
    """A run begun in fp32 NCHW goes on in bf16 channels-last when a resume asks: the
    schedule continues, the change is announced once, and run.json records it for the
    resumes after."""
    run_dir = tmp_path / 'run'
    assert _train('--data-root', str(camvid), *TINY_ARGS, '--epochs', '2', '--amp', 'none',
                  '--no-channels-last', '--stop-after', '1', '--out', str(run_dir)) == 0
    capsys.readouterr()
    assert cli.main(['train', '--resume', str(run_dir), '--amp', 'bf16', '--channels-last',
                     '--no-progress']) == 0
    said = ''.join(capsys.readouterr())
    assert 'this session trains in bf16, channels-last; the run trained in fp32, NCHW' in said
    history = _history(run_dir)
    assert [h['epoch'] for h in history] == [1, 2]
    assert np.isfinite([h['loss'] for h in history]).all()
    assert read_weights(run_dir / 'last.pt')['epoch'] == 2
    # Resumed without them, the run goes on as it trains now, with nothing to say about it.
    assert cli.main(['train', '--resume', str(run_dir), '--epochs', '3', '--no-progress']) == 0
    assert 'this session trains in' not in ''.join(capsys.readouterr())
    assert read_weights(run_dir / 'last.pt')['epoch'] == 3
    record = json.loads((run_dir / 'run.json').read_text())
    assert (record['args']['amp'], record['args']['channels_last']) == ('bf16', True)
    assert [(s['from_epoch'], s['amp'], s['channels_last']) for s in record['sessions']] == [
        (0, 'none', False), (1, 'bf16', True), (2, 'bf16', True)]
    assert '--amp bf16 --channels-last' in record['sessions'][1]['command']


def _plateau_rates(losses, lr, factor, patience, threshold, floor):
    """The rates after each epoch of a rate multiplied by ``factor`` once more than
    ``patience`` epochs in a row have not lowered the best loss by the relative ``threshold``."""
    best, bad, rates = float('inf'), 0, []
    for loss in losses:
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = max(lr * factor, floor), 0
        rates.append(lr)
    return rates


def test_plateau_schedule_halves_on_stalled_loss_and_resumes_exactly(camvid, tmp_path):
    """--lr-schedule plateau with --augment flip-translate (RDS-Net's recipe): the logged
    rate is reduced after each stall of the epoch loss, never below --lr-end, and a run
    stopped twice and resumed follows the same rates, losses and weights as a straight one."""
    # A demanding threshold (each epoch 30 % lower) makes the tiny run stall early and often.
    data = ['--data-root', str(camvid), *TINY_ARGS, '--epochs', '6', '--lr', '1e-3',
            '--lr-end', '3e-4', '--lr-schedule', 'plateau', '--plateau-patience', '1',
            '--plateau-threshold', '0.3', '--augment', 'flip-translate']
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    assert _train(*data, '--out', str(straight)) == 0
    assert _train(*data, '--out', str(stopped), '--stop-after', '2') == 0
    assert cli.main(['train', '--resume', str(stopped), '--stop-after', '4',
                     '--no-progress']) == 0
    assert cli.main(['train', '--resume', str(stopped), '--no-progress']) == 0
    history = _history(straight)
    rates = [h['lr'] for h in history]
    assert rates == pytest.approx(_plateau_rates([h['loss'] for h in history], 1e-3, 0.5, 1,
                                                 0.3, 3e-4))
    assert rates[0] == 1e-3 and rates[-1] == 3e-4 and len(set(rates)) == 3
    assert [{k: v for k, v in h.items() if k != 'seconds'} for h in _history(stopped)] == \
        [{k: v for k, v in h.items() if k != 'seconds'} for h in history]
    a, b = read_weights(straight / 'last.pt'), read_weights(stopped / 'last.pt')
    for key, tensor in a['state_dict'].items():
        assert torch.equal(tensor, b['state_dict'][key]), key
    assert a['scheduler'] == b['scheduler'] and a['scheduler']['last_epoch'] == 6
    args = json.loads((stopped / 'run.json').read_text())['args']
    assert (args['lr_schedule'], args['plateau_factor'], args['plateau_patience'],
            args['plateau_threshold'], args['lr_end'], args['augment']) == \
        ('plateau', 0.5, 1, 0.3, 3e-4, 'flip-translate')


def test_step_schedule_steps_every_n_epochs_and_resumes_exactly(camvid, tmp_path):
    """--lr-schedule step (the reference PyTorch ENet's): the logged rate is --lr times
    --step-factor once per --step-epochs epochs, never below --lr-end, and a run stopped and
    resumed mid-step follows the same rates, losses and weights as a straight one."""
    data = ['--data-root', str(camvid), *TINY_ARGS, '--epochs', '7', '--lr', '1e-3',
            '--lr-end', '2e-4', '--lr-schedule', 'step', '--step-epochs', '2',
            '--step-factor', '0.5', '--no-augment']
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    assert _train(*data, '--out', str(straight)) == 0
    assert _train(*data, '--out', str(stopped), '--stop-after', '3') == 0
    assert cli.main(['train', '--resume', str(stopped), '--no-progress']) == 0
    history = _history(straight)
    # The rate after each epoch's update, what the next epoch trains at.
    assert [h['lr'] for h in history] == pytest.approx(
        [1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2e-4, 2e-4])
    assert [{k: v for k, v in h.items() if k != 'seconds'} for h in _history(stopped)] == \
        [{k: v for k, v in h.items() if k != 'seconds'} for h in history]
    a, b = read_weights(straight / 'last.pt'), read_weights(stopped / 'last.pt')
    for key, tensor in a['state_dict'].items():
        assert torch.equal(tensor, b['state_dict'][key]), key
    args = json.loads((stopped / 'run.json').read_text())['args']
    assert (args['lr_schedule'], args['step_epochs'], args['step_factor']) == ('step', 2, 0.5)


def test_run_from_before_augment_and_lr_schedule_resumes_as_it_was(camvid, tmp_path):
    """A run.json without --augment and --lr-schedule (older runs) resumes with the
    polynomial schedule and its --no-augment flag read as --augment none."""
    run_dir = tmp_path / 'old'
    assert _train('--data-root', str(camvid), *TINY_ARGS, '--epochs', '2', '--no-augment',
                  '--out', str(run_dir), '--stop-after', '1') == 0
    record = json.loads((run_dir / 'run.json').read_text())
    assert record['args']['augment'] == 'none'
    for key in ('augment', 'lr_schedule', 'plateau_factor', 'plateau_patience',
                'plateau_threshold'):
        del record['args'][key]
    record['args']['no_augment'] = True
    (run_dir / 'run.json').write_text(json.dumps(record))
    assert cli.main(['train', '--resume', str(run_dir), '--no-progress']) == 0
    args = read_weights(run_dir / 'last.pt')['args']
    assert (args['augment'], args['lr_schedule'], 'no_augment' in args) == \
        ('none', 'poly', False)
    assert _history(run_dir)[-1]['lr'] == 0.0


def test_device_pipeline_trains_resumes_exactly_and_holds_out(camvid, tmp_path):
    """The device-resident pipeline (CPU tensors here) learns, resumes bit-identically, and
    validates on the held-out sequence only."""
    data = ['--data-root', str(camvid), '--split', 'train+val', '--holdout', '0001TP',
            '--resize', '64x48', '--crop', '64x48', '--batch-size', '3', '--val-every', '2',
            '--data-pipeline', 'device', '--epochs', '3', '--limit', '8']
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    assert _train(*data, '--out', str(straight)) == 0
    assert _train(*data, '--out', str(stopped), '--stop-after', '1') == 0
    assert cli.main(['train', '--resume', str(stopped), '--no-progress']) == 0
    a, b = read_weights(straight / 'last.pt'), read_weights(stopped / 'last.pt')
    for key, tensor in a['state_dict'].items():
        assert torch.equal(tensor, b['state_dict'][key]), key
    history = _history(straight)
    assert history[0]['loss'] > history[-1]['loss']
    assert history[-1]['val_miou'] is not None
    assert json.loads((straight / 'run.json').read_text())['args']['data_pipeline'] == 'device'
    # 8 frames of 0006R0 and 0016E5 trained a partial last batch: 3 + 3 + 2 per epoch.
    assert a['scheduler']['last_epoch'] == 9


def test_ema_weights_are_saved_validated_and_resume_exactly(camvid, tmp_path):
    """--ema: the run's weights are the moving average; the trained ones travel beside them,
    and a stopped run resumes bit-identically."""
    data = ['--data-root', str(camvid), *TINY_ARGS, '--epochs', '3', '--ema', '0.9']
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    assert _train(*data, '--out', str(straight)) == 0
    assert _train(*data, '--out', str(stopped), '--stop-after', '1') == 0
    assert cli.main(['train', '--resume', str(stopped), '--no-progress']) == 0
    a, b = read_weights(straight / 'last.pt'), read_weights(stopped / 'last.pt')
    for key in a['state_dict']:
        assert torch.equal(a['state_dict'][key], b['state_dict'][key]), key
        assert torch.equal(a['trained_state_dict'][key], b['trained_state_dict'][key]), key
    differs = [k for k, v in a['state_dict'].items()
               if v.is_floating_point() and not torch.equal(v, a['trained_state_dict'][k])]
    assert differs, 'the averaged weights equal the trained ones'
    assert _history(straight)[-1]['val_miou'] is not None
    assert _train('--data-root', str(camvid), '--ema', '1.5', '--out', str(tmp_path / 'x')) == 2


def test_cuda_graph_on_a_cpu_trains_as_eager_and_says_so(camvid, tmp_path, capsys):
    """--cuda-graph without CUDA: one warning, then the very same training as without it."""
    data = ['--data-root', str(camvid), *TINY_ARGS, '--epochs', '2']
    plain, graphed = tmp_path / 'plain', tmp_path / 'graphed'
    assert _train(*data, '--out', str(plain)) == 0
    capsys.readouterr()
    assert _train(*data, '--out', str(graphed), '--cuda-graph') == 0
    assert '--cuda-graph needs a CUDA device' in capsys.readouterr().out
    a, b = read_weights(plain / 'last.pt'), read_weights(graphed / 'last.pt')
    for key, tensor in a['state_dict'].items():
        assert torch.equal(tensor, b['state_dict'][key]), key


def test_graphed_step_wrapper_trains_eagerly_on_cpu_tensors():
    """Off CUDA the wrapper zeroes gradients and runs the step each time: plain training."""
    def fit(use_wrapper: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)

        def step(x, y):
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        def zero_grad():
            optimizer.zero_grad(set_to_none=True)
        wrapped = GraphedStep(step, zero_grad, notify=pytest.fail, warmup_steps=1)
        data = torch.Generator().manual_seed(1)
        for _ in range(5):
            x, y = torch.randn(8, 4, generator=data), torch.randint(0, 2, (8,), generator=data)
            if use_wrapper:
                wrapped(x, y)
            else:
                zero_grad()
                step(x, y)
        assert not wrapped.captured and wrapped.failed is None
        return model.weight.detach().clone()
    assert torch.equal(fit(True), fit(False))


def test_capturable_optimizer_saves_a_portable_state():
    """make_capturable turns the learning rate into a tensor the scheduler fills in place;
    the saved state is a plain optimizer's, and loads into one."""
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    make_capturable(optimizer, torch.device('cpu'))
    lr = optimizer.param_groups[0]['lr']
    assert isinstance(lr, torch.Tensor) and optimizer.param_groups[0]['capturable']
    scheduler.step()
    assert optimizer.param_groups[0]['lr'] is lr and float(lr) == pytest.approx(5e-4)
    state = portable_state_dict(optimizer)
    assert state['param_groups'][0]['lr'] == pytest.approx(5e-4)
    assert state['param_groups'][0]['capturable'] is False
    plain = torch.optim.Adam(torch.nn.Linear(3, 1).parameters(), lr=1.0)
    plain.load_state_dict(state)
    assert plain.param_groups[0]['lr'] == pytest.approx(5e-4)
    assert isinstance(optimizer.param_groups[0]['lr'], torch.Tensor)


def test_distillation_loss_is_the_scaled_divergence_to_the_teacher():
    """T^2 KL(teacher || student) per pixel: zero on agreement, by hand otherwise."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 4, 3, 5, generator=generator)
    assert distillation_loss(teacher.clone(), teacher, 2.0).item() == pytest.approx(0, abs=1e-6)
    student = torch.randn(2, 4, 3, 5, generator=generator, requires_grad=True)
    p = torch.softmax(teacher / 2.0, dim=1)
    by_hand = (p * (p.log() - torch.log_softmax(student / 2.0, dim=1))).sum(1).mean() * 4.0
    loss = distillation_loss(student, teacher, 2.0)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()
    assert student.grad.abs().sum() > 0


def test_distillation_trains_towards_the_teacher(learned_run, camvid, tmp_path):
    """--teacher with weight 1: the loss is the divergence from the teacher's labels and
    falls as the student learns them; run.json names the teacher's weights."""
    run = tmp_path / 'student'
    assert _train('--data-root', str(camvid), *TINY_ARGS, '--epochs', '6', '--lr', '3e-3',
                  '--no-augment', '--teacher', MODEL, '--teacher-weights',
                  str(learned_run / 'last.pt'), '--distill-weight', '1',
                  '--out', str(run)) == 0
    losses = [h['loss'] for h in _history(run)]
    assert losses[-1] < 0.7 * losses[0], losses
    teacher = json.loads((run / 'run.json').read_text())['teacher']
    assert teacher['path'] == str(learned_run / 'last.pt') and len(teacher['sha256']) == 64
    assert _train('--data-root', str(camvid), '--teacher', 'enet', '--teacher-weights',
                  str(learned_run / 'last.pt'), '--out', str(tmp_path / 'x')) == 2


def test_fitted_epochs_fill_the_time_left():
    """--fit-epochs plans the remaining epochs at the slowest measured pace, with a margin."""
    assert fitted_epochs(1500, 3, [9.0, 2.0, 2.5], 100.0) == 3 + int(90 / 2.5)
    assert fitted_epochs(20, 3, [9.0, 2.0, 2.5], 1000.0) == 20
    assert fitted_epochs(1500, 3, [9.0, 2.0, 2.5], -5.0) == 4


def test_time_budget_stops_a_session_resumably(camvid, tmp_path):
    """A tiny budget stops after the first epoch with last.pt written, to be resumed."""
    run_dir = tmp_path / 'run'
    assert _train('--data-root', str(camvid), *TINY_ARGS, '--epochs', '3', '--out', str(run_dir),
                  '--time-budget', '0.01', '--fit-epochs') == 0
    assert read_weights(run_dir / 'last.pt')['epoch'] == 1
    state = progress.read_progress(run_dir)
    assert (state.epochs_done, state.epochs) == (1, 3)
    assert state.seconds_left == pytest.approx(2 * state.seconds[0])
    assert cli.main(['train', '--resume', str(run_dir), '--no-progress']) == 0
    assert read_weights(run_dir / 'last.pt')['epoch'] == 3


def test_progress_tells_epochs_validations_and_time_left(learned_run, tmp_path, capsys):
    """python -m semseg_ros.training.progress: the run's row; a folder that is no run, or a
    damaged log, is named with exit code 2."""
    history = _history(learned_run)
    validations = [(h['epoch'], h['val_miou']) for h in history if h['val_miou'] is not None]
    state = progress.read_progress(learned_run)
    assert (state.epochs_done, state.epochs) == (30, 30) and state.seconds_left == 0
    assert state.validations == validations and len(validations) == 3
    best = max(validations, key=lambda v: v[1])
    assert state.best == best and state.val_name == 'train'
    assert progress.main([str(learned_run)]) == 0
    header, rule, row = capsys.readouterr().out.strip().splitlines()
    assert header.startswith('| network |') and row.startswith(f'| {MODEL} | `run` | 30 / 30 |')
    assert f'{best[1] * 100:.1f} at epoch {best[0]} (train; ' in row
    assert progress.main([str(tmp_path)]) == 2
    assert f'{tmp_path / "run.json"}: No such file' in capsys.readouterr().err
    damaged = tmp_path / 'damaged'
    damaged.mkdir()
    (damaged / 'run.json').write_bytes((learned_run / 'run.json').read_bytes())
    (damaged / 'log.jsonl').write_text('{"epoch": 1, "loss": 1.0}\n')
    assert progress.main([str(damaged)]) == 2
    assert f'{damaged / "log.jsonl"}, line 1: not an epoch record' in capsys.readouterr().err


def test_campaign_trains_its_queue_in_order_and_resumes_what_stopped(camvid, tmp_path):
    """tools/campaign.py, with options that shrink every run to four small frames: a run
    that stops early ends the campaign there; the next call resumes it with its own settings
    and then starts each other network of the queue, in order, with its recipe; a third call
    finds every run trained and starts nothing."""
    sys.path.insert(0, str(REPO_ROOT / 'tools'))
    try:
        import campaign
    finally:
        sys.path.remove(str(REPO_ROOT / 'tools'))
    runs = tmp_path / 'runs'
    tiny = ['--limit', '4', '--resize', '64x48', '--crop', '64x48', '--batch-size', '2',
            '--threads', '1', '--val-every', '1', '--no-compile']

    def call(*extra):
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / 'tools' / 'campaign.py'), str(camvid), str(runs),
             '--', *extra], capture_output=True, text=True, timeout=900,
            env={**os.environ, 'OMP_NUM_THREADS': '1'})
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    names = [name for name, _ in campaign.QUEUE]
    out = call(*tiny, '--epochs', '2', '--stop-after', '1')
    assert f'{names[0]}: stopped after 1 of 2 epochs; the campaign stops here' in out
    assert [p.name for p in runs.iterdir()] == [names[0]]
    out = call(*tiny, '--epochs', '1')
    trained = [line.split('] ')[1].split(':')[0] for line in out.splitlines()
               if line.endswith('epochs trained')]
    assert trained == names, out
    for name, recipe in campaign.QUEUE:
        record = json.loads((runs / name / 'run.json').read_text())
        args = record['args']
        assert args['model'] == recipe[recipe.index('--model') + 1]
        assert (progress.read_progress(runs / name).epochs_done, args['epochs']) == \
            ((2, 2) if name == names[0] else (1, 1))
        assert (args['batch_size'], args['compile'], args['val_every']) == (2, None, 1)
        assert args['data_root'] == str(camvid.resolve())
    assert json.loads((runs / 'enet_300' / 'run.json').read_text())['args']['lr_schedule'] \
        == 'step'
    sessions = json.loads((runs / names[0] / 'run.json').read_text())['sessions']
    assert len(sessions) == 2 and '--resume' in sessions[1]['command']
    out = call()
    assert 'every run has trained all its epochs' in out and 'semseg_ros.cli' not in out


def test_campaign_stops_on_sigterm_and_starts_nothing_more(camvid, tmp_path):
    """SIGTERM to tools/campaign.py stops the training run it started, which keeps its
    finished epochs, and no further run of the queue starts."""
    runs = tmp_path / 'runs'
    campaign = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / 'tools' / 'campaign.py'), str(camvid), str(runs),
         '--', *TINY_ARGS, '--threads', '1', '--epochs', '1000', '--val-split', 'none'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, 'OMP_NUM_THREADS': '1'})
    log = runs / 'mininet_v2_cpu_1500' / 'log.jsonl'
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text()) and campaign.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    campaign.send_signal(signal.SIGTERM)
    out, _ = campaign.communicate(timeout=120)
    assert campaign.returncode == 0, out
    assert 'mininet_v2_cpu_1500: stopped on request' in out
    assert [p.name for p in runs.iterdir()] == ['mininet_v2_cpu_1500']
    done = progress.read_progress(runs / 'mininet_v2_cpu_1500')
    assert 1 <= done.epochs_done < 1000
    assert read_weights(runs / 'mininet_v2_cpu_1500' / 'last.pt')['epoch'] >= 1


def test_eval_scores_only_the_named_sequences(learned_run, camvid, tmp_path, capsys):
    """semseg eval --sequences scores one sequence's frames and records the selection."""
    out = tmp_path / 'eval.json'
    assert cli.main(['eval', '--model', MODEL, '--weights', str(learned_run / 'last.pt'),
                     '--data-root', str(camvid), '--split', 'train', '--sequences', '0001TP',
                     '--size', '128x96', '--json', str(out), '--no-progress']) == 0
    record = json.loads(out.read_text())
    assert record['images'] == 62 and record['sequences'] == ['0001TP']
    assert cli.main(['eval', '--model', MODEL, '--data-root', str(camvid),
                     '--sequences', 'Seq05VD']) == 2
    assert 'no frames of sequence(s) Seq05VD' in capsys.readouterr().err


def test_compiled_training_saves_plain_weights(camvid, tmp_path):
    """--compile trains through torch.compile; checkpoints hold the plain model's weights.

    The eager backend runs the same TorchDynamo capture in seconds (inductor's code
    generation takes minutes on two cores).
    """
    run_dir = tmp_path / 'compiled'
    assert _train('--data-root', str(camvid), *TINY_ARGS, '--epochs', '1', '--compile',
                  'eager', '--val-split', 'none', '--out', str(run_dir)) == 0
    last = read_weights(run_dir / 'last.pt')
    assert not any(key.startswith('_orig_mod') for key in last['state_dict'])
    load_weights(create_model(MODEL, 11), run_dir / 'last.pt', MODEL, 11)  # strict keys
    assert json.loads((run_dir / 'run.json').read_text())['args']['compile'] == 'eager'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_compile_auto_decides_from_the_steps_the_session_plans(
        camvid, tmp_path, monkeypatch, capsys):
    """The trainer resolves --compile auto (the default) for each session from the steps it
    will train: ENet compiled (inductor, said so) when they reach the threshold, eager when
    --stop-after leaves fewer; --no-compile always eager. No step runs, so nothing compiles
    here (torch.compile is lazy)."""
    from semseg_ros.commands.train import build_parser
    from semseg_ros.training import engine, train
    monkeypatch.setattr(engine, 'AUTO_COMPILE_STEPS', 6)
    monkeypatch.setenv('CXX', sys.executable)  # a C++ compiler "found" wherever the test runs

    def trainer(*extra):
        argv = ['--model', 'enet', '--data-root', str(camvid), *TINY_ARGS, '--epochs', '3',
                '--threads', '1', '--no-progress', '--out', str(tmp_path / 'run'), *extra]
        config = train.config_from_args(build_parser().parse_args(argv))
        train.check_config(config)
        return train.Trainer(config, argv, torch.device('cpu'), 0, 1)

    compiled = trainer()  # 3 epochs of 2 steps: 6
    assert compiled.config['compile'] == 'auto' and compiled.compiled == 'inductor'
    assert isinstance(compiled.net, torch._dynamo.eval_frame.OptimizedModule)
    assert 'compiling the training step (inductor): enet' in capsys.readouterr().out
    for extra in (['--stop-after', '2'], ['--no-compile']):
        eager = trainer(*extra)
        assert eager.compiled is None and eager.net is eager.model, extra
        assert 'compiling' not in capsys.readouterr().out


def test_ddp_two_processes(camvid, tmp_path):
    """torchrun with 2 CPU processes (gloo): one set of outputs, validation summed over ranks."""
    run_dir = tmp_path / 'ddp'
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT), 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--master_addr=127.0.0.1', f'--master_port={_free_port()}',
         '-m', 'semseg_ros.commands.train', '--model', MODEL, '--data-root', str(camvid),
         *TINY_ARGS, '--epochs', '2', '--threads', '1', '--no-progress',
         '--out', str(run_dir)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == \
        ['best.pt', 'curves.png', 'last.pt', 'log.csv', 'log.jsonl', 'run.json']
    for epoch in (1, 2):  # rank 0 alone reports
        assert result.stdout.count(f'epoch {epoch}/2 ') == 1, result.stdout
    assert '2 process(es)' in result.stdout
    history = _history(run_dir)
    assert len(history) == 2
    assert json.loads((run_dir / 'run.json').read_text())['sessions'][0]['world_size'] == 2
    # Each rank scored half the frames; the summed matrix must equal a one-process score.
    model = create_model(MODEL, 11)
    load_weights(model, run_dir / 'last.pt', MODEL, 11)
    dataset = build_dataset('camvid', camvid, 'val', resize=(64, 48))
    dataset.pairs = dataset.pairs[:4]
    dataset.validate()
    matrix = evaluate_model(model, dataset, 11, 11, 8, torch.device('cpu'), batch_size=2,
                            progress=False)
    assert history[-1]['val_miou'] == pytest.approx(matrix.miou(), abs=1e-3)


def test_eval_writes_table_json_and_plots(learned_run, camvid, tmp_path, capsys):
    """semseg eval on val frames prints the table and writes consistent JSON and PNGs."""
    json_path, plots = tmp_path / 'eval.json', tmp_path / 'plots'
    code = cli.main(['eval', '--model', MODEL, '--weights', str(learned_run / 'best.pt'),
                     '--dataset', 'camvid', '--data-root', str(camvid), '--split', 'val',
                     '--limit', '3', '--size', '240x176', '--threads', '1', '--no-progress',
                     '--json', str(json_path), '--plots', str(plots)])
    assert code == 0
    out = capsys.readouterr().out
    figures = json.loads(json_path.read_text())
    for name in ('Sky', 'Bicyclist', 'mIoU', 'pixel acc', 'mean class acc'):
        assert name in out
    assert f'{100 * figures["miou"]:5.1f}' in out
    matrix = ConfusionMatrix(11, 11)
    matrix.matrix[:] = np.array(figures['confusion_matrix'])
    assert matrix.total == 3 * 480 * 360 - sum(
        int((cv2.imread(str(camvid / line.split()[1]), cv2.IMREAD_UNCHANGED) == 11).sum())
        for line in (camvid / 'val.txt').read_text().splitlines()[:3])
    assert figures['miou'] == pytest.approx(matrix.miou())
    assert figures['pixel_accuracy'] == pytest.approx(matrix.pixel_accuracy())
    assert figures['images'] == 3 and figures['split'] == 'val'
    for name in ('confusion_matrix.png', 'class_iou.png'):
        image = cv2.imread(str(plots / name))
        assert image is not None and image.shape[0] > 300 and image.std() > 10


def test_export_best_weights(learned_run, tmp_path):
    """The exported file holds weights and provenance, no optimizer, and loads into a model."""
    path = export_best(learned_run, tmp_path / 'shipped.pt')
    payload = read_weights(path)
    assert 'optimizer' not in payload and 'rng' not in payload
    meta = payload['meta']
    history = _history(learned_run)
    assert meta['epochs_trained'] == 30 and meta['dataset'] == 'camvid'
    assert meta['val_miou'] == max(h['val_miou'] for h in history if h['val_miou'])
    assert set(meta['val_iou']) == {'Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                                    'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist'}
    assert meta['commands'][0].startswith('semseg train --model mininet_v2_cpu')
    assert meta['train_wall_seconds'] > 0 and meta['date']
    assert meta['run'] == learned_run.name and meta['init'] is None
    assert meta['recipe'] == {
        'lr_schedule': 'poly', 'lr_end': 0.0, 'poly_power': 0.9, 'plateau_factor': 0.5,
        'plateau_patience': 10, 'step_epochs': 100, 'step_factor': 0.1, 'weight_decay': 2e-4,
        'augment': 'none', 'scale_range': [0.5, 2.0]}
    # The one session: from the start, on this machine's CPU, in what it trained in.
    session, = meta['sessions']
    assert session['from_epoch'] == 0 and session['world_size'] == 1
    assert session['machine'] == f'{os.cpu_count()}-core CPU ({cpu_model()})'
    assert (session['amp'], session['channels_last']) == \
        (read_weights(learned_run / 'last.pt')['args']['amp'],
         read_weights(learned_run / 'last.pt')['args']['channels_last'])
    assert [h['epoch'] for h in meta['history']] == list(range(1, 31))
    assert [h['epoch'] for h in meta['history'] if h['val_miou'] is not None] == [10, 20, 30]
    assert meta['history'][-1]['loss'] == pytest.approx(history[-1]['loss'], abs=1e-5)
    load_weights(create_model(MODEL, 11), path, MODEL, 11)


def test_ship_writes_weights_fresh_graphs_and_card(learned_run, tmp_path, capsys):
    """ship: best weights, graphs the node will find fresh, stale graphs gone, a current card."""
    from semseg_ros.core.backends import graph_metadata, onnx_metadata
    from semseg_ros.core.weights import file_digest
    from semseg_ros.training import model_card, ship
    stale = tmp_path / f'{MODEL}_camvid.512x256.onnx'
    stale.write_bytes(b'graph of older weights')
    assert ship.main([str(learned_run), '--size', '64x48', '--weights-dir', str(tmp_path)]) == 0
    weights = tmp_path / f'{MODEL}_camvid.pt'
    assert read_weights(weights)['meta']['best_epoch'] == read_weights(
        learned_run / 'best.pt')['epoch']
    expected = graph_metadata(MODEL, file_digest(weights), 64, 48)
    graphs = sorted(tmp_path.glob('*.onnx'))
    assert [g.name for g in graphs] == [f'{MODEL}_camvid.64x48.conf.onnx',
                                        f'{MODEL}_camvid.64x48.onnx']
    for graph in graphs:
        assert onnx_metadata(graph).items() >= expected.items()
    assert model_card.main(['--folder', str(tmp_path), '--check']) == 0
    assert (tmp_path / 'training_curves.png').is_file()
    out = capsys.readouterr().out
    assert f'shipped {weights}: weights and provenance' in out
    assert out.count('labels agree with PyTorch on') == 2  # both graphs, each checked
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert ship.main([str(learned_run), '--size', '60x48', '--weights-dir', str(tmp_path)]) == 2
    assert 'multiples of 8' in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # untouched


def test_init_fine_tunes_from_trained_weights(learned_run, camvid, tmp_path):
    """--init starts a new run from trained weights: its first epoch already fits the frames.

    The provenance (file, digest, its val mIoU) goes into run.json, the exported weights and
    the model card.
    """
    from semseg_ros.training import model_card
    run_dir = tmp_path / 'tuned'
    init = learned_run / 'best.pt'
    assert _train('--data-root', str(camvid), '--out', str(run_dir), *LEARN_ARGS,
                  '--epochs', '1', '--lr', '1e-4', '--init', str(init)) == 0
    fresh_first, tuned_first = _history(learned_run)[0], _history(run_dir)[0]
    assert tuned_first['loss'] < 0.5 * fresh_first['loss']
    assert tuned_first['val_miou'] > 0.8 * read_weights(init)['meta']['val_miou']
    record = json.loads((run_dir / 'run.json').read_text())['init']
    assert record['path'] == str(init) and record['skipped'] == []
    assert record['val_miou'] == read_weights(init)['meta']['val_miou']
    exported = export_best(run_dir, tmp_path / 'card' / f'{MODEL}_camvid.pt')
    assert read_weights(exported)['meta']['init']['sha256'] == record['sha256']
    assert model_card.main(['--folder', str(exported.parent)]) == 0
    assert f'| started from | `best.pt` (sha256 {record["sha256"][:12]}' in \
        (exported.parent / 'MODEL_CARD.md').read_text()


def test_init_keeps_fresh_classifier_for_another_class_set(learned_run):
    """Weights of 11 CamVid classes start a 19-class network: all but the classifier load."""
    from semseg_ros.core.weights import load_matching_weights, WeightsError
    model = create_model(MODEL, 19)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    result = load_matching_weights(model, learned_run / 'best.pt', MODEL)
    trained = read_weights(learned_run / 'best.pt')['state_dict']
    assert result['skipped'] and len(result['loaded']) + len(result['skipped']) == len(fresh)
    for name, tensor in model.state_dict().items():
        if name in result['skipped']:
            assert torch.equal(tensor, fresh[name]) and tensor.shape != trained[name].shape
        else:
            assert torch.equal(tensor, trained[name]), name
    with pytest.raises(WeightsError, match="weights are for model 'mininet_v2_cpu'"):
        load_matching_weights(create_model('enet', 11), learned_run / 'best.pt', 'enet')


@pytest.mark.parametrize('argv, message', [
    (['train', '--model', MODEL, '--out', 'x'], '--data-root is required'),
    (['train', '--model', 'nonet', '--data-root', '.', '--out', 'x'], "unknown model 'nonet'"),
    (['train', '--model', MODEL, '--data-root', '/no/such/dir', '--out', '{tmp}/r'],
     '/no/such/dir: data root folder not found'),
    (['train', '--model', MODEL, '--data-root', '.', '--crop', '100x100', '--out', 'x'],
     'multiples of 8'),
    (['train', '--model', MODEL, '--data-root', '.', '--crop', 'big', '--out', 'x'],
     'not WIDTHxHEIGHT'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-end', '0.01', '--out', 'x'],
     '--lr-end must be at least 0 and below --lr'),
    (['train', '--resume', '{tmp}'], 'no run.json'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-schedule', 'plateau',
      '--plateau-factor', '1', '--out', 'x'], '--plateau-factor must be between 0 and 1'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-schedule', 'plateau',
      '--plateau-patience', '0', '--out', 'x'], '--plateau-patience must be at least 1'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-schedule', 'plateau',
      '--poly-power', '2', '--out', 'x'], '--poly-power applies to --lr-schedule poly only'),
    (['train', '--model', MODEL, '--data-root', '.', '--plateau-patience', '5', '--out', 'x'],
     '--plateau-patience applies to --lr-schedule plateau only, not poly'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-schedule', 'plateau',
      '--step-epochs', '100', '--out', 'x'],
     '--step-epochs applies to --lr-schedule step only, not plateau'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-schedule', 'step',
      '--step-factor', '0', '--out', 'x'], '--step-factor must be between 0 and 1'),
    (['train', '--model', MODEL, '--data-root', '.', '--lr-schedule', 'step',
      '--step-epochs', '0', '--out', 'x'], '--step-epochs must be at least 1'),
    (['train', '--model', MODEL, '--data-root', '.', '--augment', 'flip-translate',
      '--scale-range', '1', '1', '--out', 'x'],
     '--scale-range applies to --augment full only, not flip-translate'),
    (['train', '--model', MODEL, '--data-root', '.', '--init', '/no/w.pt', '--out', 'x'],
     '--init /no/w.pt: weights file not found: /no/w.pt'),
    (['eval', '--model', MODEL, '--data-root', '.', '--weights', '/no/w.pt'],
     'weights file not found: /no/w.pt'),
    (['eval', '--model', 'nonet', '--data-root', '.'], "unknown model 'nonet'"),
    (['train', '--model', MODEL, '--data-root', '.', '--fit-epochs', '--out', 'x'],
     '--fit-epochs needs --time-budget SECONDS'),
    (['train', '--model', MODEL, '--data-root', '.', '--cuda-graph', '--compile', '--out', 'x'],
     '--cuda-graph and --compile: choose one'),
    (['train', '--model', MODEL, '--data-root', '.', '--teacher', MODEL, '--teacher-weights',
      '/no/t.pt', '--out', 'x'], '--teacher mininet_v2_cpu: weights file not found: /no/t.pt'),
])
def test_bad_usage_exits_2_with_a_message(argv, message, tmp_path, capsys):
    """Bad options end with exit code 2 and a one-line message, no traceback."""
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err


def test_init_shipped_without_shipped_weights(capsys, monkeypatch, tmp_path):
    """--init shipped for a network with no shipped weights: exit 2 naming the missing file."""
    from semseg_ros.training import train
    monkeypatch.setattr(train, 'shipped_weights', lambda name: tmp_path / f'{name}_camvid.pt')
    assert _train('--data-root', '.', '--init', 'shipped', '--out', str(tmp_path / 'r')) == 2
    err = capsys.readouterr().err
    assert f'{tmp_path / MODEL}_camvid.pt (none ship for this model yet)' in err


def test_resume_refuses_changed_settings_and_reused_out(learned_run, capsys):
    """--resume takes the run's settings; --out on an existing run points to --resume."""
    assert cli.main(['train', '--resume', str(learned_run), '--lr', '0.1']) == 2
    assert 'not --lr' in capsys.readouterr().err
    assert _train('--data-root', '.', '--out', str(learned_run)) == 2
    assert f'--resume {learned_run}' in capsys.readouterr().err


def test_eval_without_shipped_weights_says_how_to_train(camvid, capsys, monkeypatch, tmp_path):
    """With no --weights and no shipped file, the message names the file and how to train."""
    from semseg_ros.commands import eval as evaluate
    monkeypatch.setattr(evaluate, 'shipped_weights', lambda name: tmp_path / f'{name}.pt')
    assert cli.main(['eval', '--model', MODEL, '--data-root', str(camvid)]) == 2
    err = capsys.readouterr().err
    assert f'{tmp_path / MODEL}.pt does not exist' in err and 'semseg train' in err


def test_bad_data_stops_training_naming_the_file(camvid, tmp_path, capsys):
    """A label with ids beyond the class set stops `semseg train` before training (exit 2)."""
    root = tmp_path / 'camvid'
    lines = (camvid / 'train.txt').read_text().splitlines()[:2]
    for line in lines:
        for rel in line.split():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes((camvid / rel).read_bytes())
    (root / 'train.txt').write_text('\n'.join(lines) + '\n')
    bad = root / lines[1].split()[1]
    label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 30
    cv2.imwrite(str(bad), label)
    assert _train('--data-root', str(root), '--val-split', 'none', '--out',
                  str(tmp_path / 'run')) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and 'label ids [30]' in err
    assert not (tmp_path / 'run' / 'last.pt').exists()


def test_cli_process_exit_code():
    """The installed entry point's process exits 2 on bad usage, without a traceback."""
    result = subprocess.run([sys.executable, '-m', 'semseg_ros.cli', 'train', '--model',
                             'nonet', '--data-root', '.', '--out', 'x'], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown model 'nonet'" in result.stderr and 'Traceback' not in result.stderr
