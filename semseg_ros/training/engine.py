"""What training and evaluation share: devices, data loaders, forward pass, evaluation.

The forward pass pads the input to the model's input multiple, runs the network and
brings the logits back to the label size (bilinear), so networks with a half-resolution
output (MiniNet-v2) and full-resolution ones (ENet, RDS-Net) are scored alike.
"""

import contextlib
import os
import shutil
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from semseg_ros.core.metrics import ConfusionMatrix
from semseg_ros.data.transforms import to_network_input

AMP_MODES = ('none', 'bf16')
# The fastest stable memory format of each network's CPU training step, fp32 and bf16 alike
# (``python benchmarks/train_step.py --models all --batch-size 8 --crop 384x288 --rounds 6``
# on an AMD EPYC Zen 4, 2 threads: docs/training.md). A network not listed trains NCHW.
CPU_CHANNELS_LAST = {'enet': True, 'mininet_v2': True, 'mininet_v2_cpu': True,
                     'rds_net': False}
# Networks whose CPU training step is faster compiled (torch.compile, inductor), in bf16 and
# fp32: ENet 0.74 -> 0.60 s a bf16 step and 0.96 -> 0.69 s fp32 (benchmarks/train_step.py
# --compile, docs/training.md); compiled, the others are slower in bf16.
CPU_COMPILED = {'enet'}
# --compile auto compiles only a session of at least this many steps: compiling takes one or
# two minutes on a 2-core CPU and saves 0.15-0.25 s an ENet step, so it pays after ~700.
AUTO_COMPILE_STEPS = 2000


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX).

    Elsewhere oneDNN emulates bf16, which is slower than fp32.
    """
    checks = [getattr(torch.cpu, name, None) for name in
              ('_is_avx512_bf16_supported', '_is_amx_tile_supported')]
    return any(check() for check in checks if check is not None)


def training_speed_settings(model_name: str, device: torch.device, amp: str,
                            channels_last: Optional[bool]) -> Tuple[str, bool, str]:
    """Resolve ``--amp auto`` and an unset ``--channels-last`` for a network and device.

    On a CPU, auto is the fastest stable combination measured for the network
    (:data:`CPU_CHANNELS_LAST`), in bf16 where the CPU computes it in hardware (the
    channels-last bf16 defect is kept out by :func:`set_memory_format`). On CUDA, auto is
    fp32 NCHW, as before: not measured there.

    Returns:
        ``(amp, channels_last, why)``: the settings and, when any was chosen here, one line
        saying what and why (else an empty string).
    """
    chosen = []
    if amp == 'auto':
        amp = 'bf16' if device.type == 'cpu' and cpu_has_native_bf16() else 'none'
        chosen.append('bf16 (this CPU computes bf16 in hardware)' if amp == 'bf16' else
                      'fp32' + (' (this CPU has no bf16 instructions)'
                                if device.type == 'cpu' else ' (auto on CUDA)'))
    if channels_last is None:
        channels_last = device.type == 'cpu' and CPU_CHANNELS_LAST.get(model_name, False)
        chosen.append(('channels-last' if channels_last else 'NCHW')
                      + (f' (the faster format of {model_name} on a CPU)'
                         if device.type == 'cpu' else ''))
    why = ('training in ' + ', '.join(chosen) + '; --amp and --channels-last/'
           '--no-channels-last choose otherwise') if chosen else ''
    return amp, bool(channels_last), why


def describe_arithmetic(amp: str, channels_last: bool) -> str:
    """``bf16, channels-last``: a precision and memory format as run.json and cards say them."""
    return (('bf16' if amp == 'bf16' else 'fp32') + ', '
            + ('channels-last' if channels_last else 'NCHW'))


def compile_setting(compile_backend: Optional[str], model_name: str, device: torch.device,
                    steps: int) -> Tuple[Optional[str], str]:
    """Resolve ``--compile auto`` for a network, a device and the steps a session plans.

    On a CPU, auto compiles (inductor) the networks of :data:`CPU_COMPILED` when the session
    plans at least :data:`AUTO_COMPILE_STEPS` steps and a C++ compiler is there (inductor
    builds C++ on a CPU); anything else trains eagerly. On CUDA, auto is eager: not measured.

    Returns:
        ``(backend or None, why)``: the setting and, when auto decided for a network that
        compiles faster, one line saying what and why (else an empty string).
    """
    if compile_backend != 'auto':
        return compile_backend, ''
    if device.type != 'cpu' or model_name not in CPU_COMPILED or steps < AUTO_COMPILE_STEPS:
        return None, ''
    compiler = os.environ.get('CXX') or 'g++'
    if shutil.which(compiler) is None:
        return None, (f'training eagerly: {model_name} trains faster compiled on a CPU, but '
                      f'torch.compile needs a C++ compiler there ({compiler} not found; '
                      'Debian: apt-get install g++)')
    return 'inductor', (f'compiling the training step (inductor): {model_name} trains '
                        'faster compiled on a CPU, after a minute or two of compiling; '
                        '--no-compile trains eagerly')


def select_device(name: str = 'auto', local_rank: int = 0) -> torch.device:
    """Return the device for ``auto`` (CUDA when present), ``cpu`` or ``cuda``.

    Raises:
        ValueError: CUDA asked for but not available, or an unknown name.
    """
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError('--device cuda asked for, but CUDA is not available')
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    if name == 'cpu':
        return torch.device('cpu')
    raise ValueError(f'unknown device {name!r}; valid: auto, cpu, cuda')


def autocast(device: torch.device, amp: str, cache: bool = True):
    """Return the autocast context of an AMP mode (``none``: a no-op context).

    ``cache=False`` re-casts the weights at each use, as a CUDA graph capture needs.
    """
    if amp == 'none':
        return contextlib.nullcontext()
    if amp == 'bf16':
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              cache_enabled=cache)
    raise ValueError(f'unknown AMP mode {amp!r}; valid: {", ".join(AMP_MODES)}')


def _to_nchw(module: nn.Module, args: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, ...]:
    return (args[0].contiguous(),)


def _to_channels_last(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return output.contiguous(memory_format=torch.channels_last)


def set_memory_format(model: nn.Module, device: torch.device, amp: str,
                      channels_last: bool) -> List[str]:
    """Put a network on ``device`` in the memory format it trains in.

    With ``channels_last``, the network's tensors are channels-last, except where a kernel
    computes wrong gradients in that format: on the CPU (oneDNN, torch 2.13), bf16
    depthwise/grouped convolutions with a dilation above 1 return a weight gradient that is
    garbage (relative error above 1, now and then 1e17 or more and then infinite:
    docs/training.md has the reproduction). Under ``--amp bf16`` those layers keep NCHW
    weights, take NCHW input and hand channels-last output on; their forward pass and input
    gradient are right either way.

    Returns:
        The names of the layers kept in NCHW (empty when none is).
    """
    model.to(device)
    if not channels_last:
        return []
    model.to(memory_format=torch.channels_last)
    if amp != 'bf16' or device.type != 'cpu':
        return []
    kept = []
    for name, module in _dilated_grouped_convolutions(model):
        # oneDNN takes the channels-last kernel when the input or the weight is.
        module.to(memory_format=torch.contiguous_format)
        module.register_forward_pre_hook(_to_nchw)
        module.register_forward_hook(_to_channels_last)
        kept.append(name)
    return kept


def _dilated_grouped_convolutions(model: nn.Module) -> List[Tuple[str, nn.Conv2d]]:
    """Return the layers the wrong bf16 channels-last kernel would compute, by name."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d) and module.groups > 1 and max(module.dilation) > 1]


def compile_network(model: nn.Module, backend: str, device: torch.device,
                    amp: str) -> nn.Module:
    """``torch.compile`` a network for training, kept off the wrong bf16 kernel.

    Inductor's layout optimisation turns a graph's convolutions channels-last whatever
    format the network is in, so in bf16 on a CPU a network with dilated grouped convolutions
    (see :func:`set_memory_format`) gets their garbage weight gradients again, NCHW or not:
    MiniNet-v2-cpu's turn infinite within three steps. There the optimisation is switched off
    for this network's graphs, which leaves each convolution in the format eager mode gives
    it; elsewhere inductor runs as it is.
    """
    if (backend == 'inductor' and device.type == 'cpu' and amp == 'bf16'
            and _dilated_grouped_convolutions(model)):
        return torch.compile(model, backend=backend, options={'layout_optimization': False})
    return torch.compile(model, backend=backend)


def seed_everything(*key: int) -> None:
    """Seed torch (CPU and CUDA) from a tuple of integers, e.g. (run seed, epoch, rank)."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])
    torch.manual_seed(seed)


def limit_cv2_threads() -> None:
    """Keep OpenCV single-threaded in training and evaluation processes.

    The data pipeline's OpenCV calls are small and torch owns the cores; and an OpenCV
    thread pool started in the parent can deadlock data-loader workers forked from it.
    """
    import cv2
    cv2.setNumThreads(1)


def make_loader(dataset: Dataset, batch_size: int, workers: int, sampler=None,
                drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """Build a DataLoader: the sampler decides the order; torch keeps workers single-threaded."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=workers, drop_last=drop_last, pin_memory=pin_memory,
                      persistent_workers=False)


def distributed_context() -> Tuple[int, int, int]:
    """Return (rank, world size, local rank) from torchrun's environment (0, 1, 0 without)."""
    return (int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1)),
            int(os.environ.get('LOCAL_RANK', 0)))


def is_distributed() -> bool:
    """Whether a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def shard(dataset: Dataset) -> Dataset:
    """This process's share of a dataset (every world-size-th sample), for evaluation.

    Unlike DistributedSampler, nothing is padded, so summed metrics count each sample once.
    """
    if not is_distributed():
        return dataset
    rank, world = dist.get_rank(), dist.get_world_size()
    return Subset(dataset, range(rank, len(dataset), world))


def forward_logits(model: nn.Module, images: torch.Tensor, multiple: int,
                   output_size: Optional[Sequence[int]] = None,
                   input_size: Optional[Sequence[int]] = None,
                   channels_last: bool = False) -> torch.Tensor:
    """Run a network on uint8 images and return logits at ``output_size``.

    Args:
        model: Network mapping ``N x 3 x H x W`` float input to logits.
        images: ``N x 3 x H x W`` uint8 RGB on the compute device.
        multiple: The model's input multiple; inputs are zero-padded right and bottom to it.
        output_size: (height, width) of the returned logits (default: the images' size).
        input_size: (height, width) to resize the images to before the network (default:
            as they are).
        channels_last: Feed the network channels-last input.

    Returns:
        ``N x C x H x W`` float logits.
    """
    x = to_network_input(images)
    if output_size is None:
        output_size = x.shape[-2:]
    if input_size is not None and tuple(input_size) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=tuple(input_size), mode='bilinear', align_corners=False,
                          antialias=input_size[0] < x.shape[-2])
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    logits = model(x)
    if pad_h or pad_w:
        # Bring the output to the padded input's scale, then cut the padding off.
        if logits.shape[-2:] != (height + pad_h, width + pad_w):
            logits = F.interpolate(logits, size=(height + pad_h, width + pad_w),
                                   mode='bilinear', align_corners=False)
        logits = logits[..., :height, :width]
    if tuple(logits.shape[-2:]) != tuple(output_size):
        logits = F.interpolate(logits, size=tuple(output_size), mode='bilinear',
                               align_corners=False)
    return logits.float()


def progress_bar(iterable, desc: str, progress: bool, **kwargs):
    """Wrap an iterable in a tqdm bar (disabled: no output); sparse updates when logged."""
    from tqdm import tqdm
    interval = 0.5 if sys.stderr.isatty() else 30.0
    return tqdm(iterable, desc=desc, disable=not progress, leave=False, dynamic_ncols=True,
                mininterval=interval, **kwargs)


def to_device(batch, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Move an (uint8 images, uint8 labels) batch to ``device``; labels become int64."""
    images, labels = batch
    return (images.to(device, non_blocking=True),
            labels.to(device, non_blocking=True).long())


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: Dataset, num_classes: int, ignore_index: int,
                   multiple: int, device: torch.device, batch_size: int = 4, workers: int = 0,
                   amp: str = 'none', channels_last: bool = False,
                   input_size: Optional[Tuple[int, int]] = None,
                   progress: bool = True, desc: str = 'eval') -> ConfusionMatrix:
    """Score a network on a dataset at label resolution.

    Under torch.distributed each process scores its shard and the counts are summed, so
    every process returns the whole dataset's matrix.

    Args:
        model: The network (set to eval mode here; the caller restores train mode).
        dataset: Yields (uint8 image, uint8 label) tensors without augmentation.
        num_classes: Number of classes.
        ignore_index: Label id that is not scored.
        multiple: The model's input multiple.
        device: Compute device.
        batch_size: Images per forward pass.
        workers: Data-loader worker processes.
        amp: AMP mode (``none`` or ``bf16``).
        channels_last: Feed channels-last input.
        input_size: (width, height) the network sees (default: each image's own size).
        progress: Show a progress bar.
        desc: Progress-bar label.
    """
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index)
    loader = make_loader(shard(dataset), batch_size, workers)
    size_hw = None if input_size is None else (input_size[1], input_size[0])
    for batch in progress_bar(loader, desc, progress, unit='batch'):
        images, labels = to_device(batch, device)
        with autocast(device, amp):
            logits = forward_logits(model, images, multiple, labels.shape[-2:], size_hw,
                                    channels_last)
        matrix.update(logits.argmax(1), labels)
    return matrix.all_reduce()
