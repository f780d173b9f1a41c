"""Every precision and memory format ``semseg train`` offers computes the right gradients.

Each network is prepared exactly as the trainer prepares it (``set_memory_format``,
``autocast``) in each offered combination (fp32 or bf16, NCHW or channels-last). Every one of
its convolutions, at the size it sees under the default 384x288 crop (the wrong kernel below
is right on small inputs), must give the gradients fp32 NCHW gives; and each network trains a
few dozen steps on real frames with every gradient finite. bf16 channels-last once gave
garbage weight gradients for dilated depthwise convolutions (a oneDNN kernel,
docs/training.md): the first test fails if any offered combination does that again, the
second if ``--compile`` (inductor) brings it back. Whole-network gradients are not compared:
through an untrained deep network, bf16 rounding alone moves them by tens of percent.
"""

import copy
import shutil
import sys

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from semseg_ros.core.resources import samples_dir
from semseg_ros.models import create_model, list_models, model_info
from semseg_ros.training.engine import (
    autocast, compile_network, forward_logits, set_memory_format)
from semseg_ros.training.losses import SegmentationLoss

CPU = torch.device('cpu')
# (amp, channels_last): every combination the trainer accepts on a CPU besides fp32 NCHW.
OFFERED = [('none', True), ('bf16', False), ('bf16', True)]
CROP = (288, 384)
# One convolution's gradients in bf16 (fp32 accumulation) against fp32: a few bf16 ulps.
CONV_TOLERANCE = 0.03
STEPS = 24
SIZE = (128, 96)


def _convolutions(model: nn.Module, name: str):
    """Return ``{(layer name, input shape): layer}`` for every convolution of one pass at
    the default crop (one image), layers of the same configuration and input shape once."""
    shapes = {}

    def record(key):
        def hook(module, args):
            shapes.setdefault(key, tuple(args[0].shape))
        return hook
    hooks = [module.register_forward_pre_hook(record(key))
             for key, module in model.named_modules()
             if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, *CROP))
    for hook in hooks:
        hook.remove()
    layers, seen = {}, set()
    for key, shape in shapes.items():
        module = model.get_submodule(key)
        config = (type(module), module.in_channels, module.out_channels, module.kernel_size,
                  module.stride, module.padding, module.dilation, module.groups, shape)
        if config not in seen:
            seen.add(config)
            layers[(key, shape)] = module
    return layers


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.double()
    return float((got.double() - want).norm() / want.norm().clamp_min(1e-300))


@pytest.mark.parametrize('amp,channels_last', OFFERED)
@pytest.mark.parametrize('name', list_models())
def test_every_convolution_gets_right_gradients(name, amp, channels_last):
    """Each convolution, prepared as the trainer prepares it, matches fp32 NCHW's gradients."""
    torch.manual_seed(0)
    model = create_model(name, 11)
    layers = _convolutions(model, name)
    set_memory_format(model, CPU, amp, channels_last)
    dtype = torch.bfloat16 if amp == 'bf16' else torch.float32
    for (key, shape), layer in layers.items():
        # Values the compute type holds exactly, so the reference sees the same inputs.
        x = torch.randn(shape).to(dtype).float()
        with torch.no_grad():
            layer.weight.copy_(layer.weight.to(dtype).float())
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        with autocast(CPU, amp):
            y = layer(x)
        g = torch.randn(y.shape).to(dtype)
        layer.zero_grad(set_to_none=True)
        y.backward(g.to(y.dtype))
        got_input, got_weight = x.grad, layer.weight.grad
        # The reference: fp32 in NCHW (fp32 accumulates as fp64 would at this tolerance).
        reference = copy.deepcopy(layer).to(memory_format=torch.contiguous_format)
        reference._forward_pre_hooks.clear()
        reference._forward_hooks.clear()
        x32 = x.detach().contiguous().requires_grad_()
        reference(x32).backward(g.float())
        for what, got, want in (('input', got_input, x32.grad),
                                ('weight', got_weight, reference.weight.grad)):
            error = _relative_error(got, want)
            assert error < CONV_TOLERANCE, (
                f'{name} {amp} channels_last={channels_last}: {key} ({type(layer).__name__}, '
                f'groups {layer.groups}, dilation {layer.dilation}, input {shape}): {what} '
                f'gradient off by {error:.3g} of its norm')


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('g++') is None,
                    reason="torch.compile's inductor needs a C++ compiler (g++) on a CPU")
@pytest.mark.parametrize('channels_last', [False, True])
def test_compiled_bf16_keeps_dilated_grouped_convolutions_right(channels_last):
    """Under ``--compile`` (inductor) in bf16 on a CPU, a dilated depthwise convolution fed by
    another layer gets the weight gradient fp32 gives, NCHW or channels-last.

    Inductor's layout optimisation made such a layer channels-last, onto the wrong kernel,
    whatever the format (MiniNet-v2-cpu's gradients were infinite by the third step);
    ``compile_network`` keeps it off.
    """
    torch.manual_seed(0)
    # MiniNet-v2-cpu's stage 3 at 384x288: 128 channels at 36x48, dilation 2.
    model = nn.Sequential(nn.Conv2d(3, 128, 1), nn.Conv2d(128, 128, 3, padding=2,
                                                          dilation=2, groups=128))
    with torch.no_grad():
        for layer in model:  # values bf16 holds exactly: the reference sees the same
            layer.weight.copy_(layer.weight.bfloat16().float())
            layer.bias.zero_()
    reference = copy.deepcopy(model)
    x = torch.randn(8, 3, 36, 48).bfloat16().float()
    g = torch.randn(8, 128, 36, 48).bfloat16().float()
    reference(x).backward(g)
    set_memory_format(model, CPU, 'bf16', channels_last)
    compiled = compile_network(model, 'inductor', CPU, 'bf16')
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(CPU, 'bf16'):
        y = compiled(x)
    y.backward(g.to(y.dtype))
    for index in (0, 1):
        error = _relative_error(model[index].weight.grad, reference[index].weight.grad)
        assert error < CONV_TOLERANCE, (
            f'compiled bf16, channels_last={channels_last}: layer {index} weight gradient off '
            f'by {error:.3g} of its norm')


@pytest.fixture(scope='module')
def batch():
    """Four real frames of the shipped sample sequence with their labels, at 128x96."""
    folder = samples_dir() / 'camvid_0016E5'
    images, labels = [], []
    for path in sorted((folder / 'images').glob('*.jpg'))[::12][:4]:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        label = cv2.imread(str(folder / 'labels' / f'{path.stem}.png'), cv2.IMREAD_UNCHANGED)
        images.append(cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA))
        labels.append(cv2.resize(label, SIZE, interpolation=cv2.INTER_NEAREST))
    return (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(np.stack(labels).astype(np.int64)))


@pytest.mark.slow
@pytest.mark.parametrize('amp,channels_last', OFFERED)
@pytest.mark.parametrize('name', list_models())
def test_offered_precisions_train_with_finite_gradients(name, amp, channels_last, batch):
    """A few dozen steps on real frames: every gradient finite, and the loss falls."""
    images, labels = batch
    torch.manual_seed(0)
    model = create_model(name, 11).train()
    set_memory_format(model, CPU, amp, channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    criterion = SegmentationLoss(None, 11)
    losses = []
    for step in range(STEPS):
        with autocast(CPU, amp):
            logits = forward_logits(model, images, model_info(name).input_multiple,
                                    channels_last=channels_last)
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(float(loss.detach()))
        for key, parameter in model.named_parameters():
            assert torch.isfinite(parameter.grad).all(), \
                f'{name} {amp} channels_last={channels_last}: step {step}: {key} not finite'
        optimizer.step()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_auto_chooses_the_measured_cpu_format_and_bf16_only_in_hardware(monkeypatch):
    """On a CPU, auto is bf16 where the CPU has bf16 instructions (else fp32) and each
    network's measured format; what is given is kept; CUDA's auto stays fp32 NCHW."""
    from semseg_ros.training import engine
    for bf16_in_hardware in (True, False):
        monkeypatch.setattr(engine, 'cpu_has_native_bf16', lambda: bf16_in_hardware)
        for name in list_models():
            amp, channels_last, why = engine.training_speed_settings(name, CPU, 'auto', None)
            assert amp == ('bf16' if bf16_in_hardware else 'none')
            assert channels_last == engine.CPU_CHANNELS_LAST.get(name, False)
            assert why.startswith('training in ') and name in why
        assert engine.training_speed_settings('rds_net', CPU, 'none', True) == (
            'none', True, '')
    assert engine.training_speed_settings('mininet_v2_cpu', torch.device('cuda'), 'auto',
                                          None)[:2] == ('none', False)


def test_compile_auto_compiles_long_cpu_sessions_of_networks_measured_faster(monkeypatch):
    """--compile auto: inductor for the networks measured faster compiled on a CPU, in a
    session of enough steps, with a C++ compiler there (else eager, saying why); eager for
    the others, on CUDA and for short sessions; a given setting is kept."""
    from semseg_ros.training import engine
    long = engine.AUTO_COMPILE_STEPS
    monkeypatch.setenv('CXX', sys.executable)  # any program found on the PATH will do
    for name in list_models():
        backend, why = engine.compile_setting('auto', name, CPU, long)
        if name in engine.CPU_COMPILED:
            assert backend == 'inductor' and name in why and '--no-compile' in why
        else:
            assert (backend, why) == (None, '')
    assert engine.CPU_COMPILED == {'enet'}  # the measured table (docs/training.md)
    assert engine.compile_setting('auto', 'enet', CPU, long - 1) == (None, '')
    assert engine.compile_setting('auto', 'enet', torch.device('cuda'), long) == (None, '')
    assert engine.compile_setting('eager', 'rds_net', CPU, 1) == ('eager', '')
    assert engine.compile_setting(None, 'enet', CPU, long) == (None, '')
    monkeypatch.setenv('CXX', '/no/such/c++')
    backend, why = engine.compile_setting('auto', 'enet', CPU, long)
    assert backend is None and '/no/such/c++ not found' in why
