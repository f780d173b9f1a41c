"""Training batches drawn and augmented where the network runs (the GPU), with no host work.

On a GPU the CPU data pipeline (decode, ``cv2.warpAffine`` per sample, host-to-device copies)
is slower than the small networks of this package: an epoch of MiniNet-v2-cpu on CamVid is
under a second of GPU work. :class:`DeviceBatches` holds the whole decoded training set on
the compute device as uint8 (CamVid train+val at 480x360: 300 MB), and each step it gathers a
batch and applies :class:`DeviceAugmentation`, the tensor form of
:class:`~semseg_ros.data.transforms.TrainAugmentation`: the same flip, scale, crop with
translation and padding (bilinear image, nearest label, black and the ignore id outside),
brightness and contrast (or, with ``pixel_shift``, whole-pixel crops and shifts), drawn from
the same distributions.

All random numbers come from one ``torch.Generator`` on the device, seeded from (run seed,
epoch), and nothing is read back to the host, so steps queue without synchronisation and
a resumed run repeats the epoch it would have run. The same code runs on CPU tensors (the
tests, and training on a CPU without workers).
"""

from typing import Iterator, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from semseg_ros.data.transforms import AugmentationSettings


def epoch_generator(device: torch.device, *key: int) -> torch.Generator:
    """Return a generator on ``device`` seeded from a tuple of integers (seed, epoch...)."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _uniform(low: float, high: float, count: int, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, device=device)


class DeviceAugmentation(AugmentationSettings):
    """The augmentation of :class:`AugmentationSettings` on batches of tensors."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Args:
            images: ``N x 3 x H x W`` uint8 RGB.
            labels: ``N x H x W`` uint8 class ids.
            generator: Random source on the tensors' device.

        Returns:
            ``(N x 3 x h x w uint8 images, N x h x w int64 labels)`` at the crop size.
        """
        count, _, height, width = images.shape
        crop_w, crop_h = self.crop_size
        device = images.device
        scale = _uniform(*self.scale_range, count, generator, device)
        flip = torch.rand(count, generator=generator, device=device) < (0.5 if self.flip else 0)
        free_x, free_y = width * scale - crop_w, height * scale - crop_h
        if self.pixel_shift is None:
            x0 = _span(free_x, generator) + self.translate * crop_w \
                * _uniform(-1.0, 1.0, count, generator, device)
            y0 = _span(free_y, generator) + self.translate * crop_h \
                * _uniform(-1.0, 1.0, count, generator, device)
        else:
            x0, y0 = (_whole_span(free, generator) + torch.randint(
                -self.pixel_shift, self.pixel_shift + 1, (count,), generator=generator,
                device=device) for free in (free_x, free_y))
        # Output pixel u comes from scaled-image pixel u + x0, i.e. source (u + x0) / scale,
        # mirrored about the image's centre when flipped (as TrainAugmentation's matrix).
        u = torch.arange(crop_w, device=device, dtype=torch.float32)
        v = torch.arange(crop_h, device=device, dtype=torch.float32)
        source_x = (u[None] + x0[:, None]) / scale[:, None]
        source_x = torch.where(flip[:, None], (width - 1) - source_x, source_x)
        source_y = (v[None] + y0[:, None]) / scale[:, None]
        images = self._warp_images(images, source_x, source_y)
        labels = self._warp_labels(labels, source_x, source_y)
        if self.brightness or self.contrast:
            images = self._photometric(images, generator)
        return images.round_().clamp_(0, 255).to(torch.uint8), labels

    @staticmethod
    def _warp_images(images: torch.Tensor, source_x: torch.Tensor,
                     source_y: torch.Tensor) -> torch.Tensor:
        """Bilinear sampling at separable source coordinates; black outside the image."""
        height, width = images.shape[-2:]
        # grid_sample's normalised coordinates (align_corners=False): pixel centres.
        grid_x = (2 * source_x + 1) / width - 1
        grid_y = (2 * source_y + 1) / height - 1
        grid = torch.stack(torch.broadcast_tensors(
            grid_x[:, None, :], grid_y[:, :, None]), dim=-1)
        return F.grid_sample(images.float(), grid, mode='bilinear', padding_mode='zeros',
                             align_corners=False)

    def _warp_labels(self, labels: torch.Tensor, source_x: torch.Tensor,
                     source_y: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour gather at the source coordinates; the ignore id outside."""
        count, height, width = labels.shape
        ix = torch.floor(source_x + 0.5).long()
        iy = torch.floor(source_y + 0.5).long()
        inside = ((ix >= 0) & (ix < width))[:, None, :] & ((iy >= 0) & (iy < height))[:, :, None]
        batch = torch.arange(count, device=labels.device)[:, None, None]
        gathered = labels[batch, iy.clamp(0, height - 1)[:, :, None],
                          ix.clamp(0, width - 1)[:, None, :]].long()
        return torch.where(inside, gathered, torch.full_like(gathered, self.ignore_index))

    def _photometric(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scale contrast about each image's mean grey level and shift its brightness."""
        count, device = images.shape[0], images.device
        contrast = _uniform(1.0 - self.contrast, 1.0 + self.contrast, count, generator, device)
        brightness = _uniform(-self.brightness, self.brightness, count, generator,
                              device) * 255.0
        mean = images.mean(dim=(1, 2, 3))
        shift = mean * (1 - contrast) + brightness
        return images * contrast[:, None, None, None] + shift[:, None, None, None]


def _span(free: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform origins between ``min(0, free)`` and ``max(0, free)``, per sample."""
    fraction = torch.rand(free.shape, generator=generator, device=free.device)
    return torch.minimum(free, torch.zeros_like(free)) + fraction * free.abs()


def _whole_span(free: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform whole origins from ``min(0, free)`` to ``max(0, free)`` per sample, as floats."""
    low = torch.ceil(torch.minimum(free, torch.zeros_like(free)))
    high = torch.floor(torch.maximum(free, torch.zeros_like(free)))
    fraction = torch.rand(free.shape, generator=generator, device=free.device)
    return torch.minimum(low + torch.floor(fraction * (high - low + 1)), high)


class DeviceBatches:
    """A training set resident on the compute device, served as augmented batches.

    Attributes:
        images: ``N x 3 x H x W`` uint8 on the device.
        labels: ``N x H x W`` uint8 on the device.
        augment: The augmentation applied to each batch.
    """

    def __init__(self, pairs: Sequence[Tuple[np.ndarray, np.ndarray]],
                 augment: DeviceAugmentation, device: torch.device):
        """Stack decoded (``H x W x 3`` RGB, ``H x W`` label) pairs of one size on ``device``.

        Raises:
            ValueError: No pairs, or pairs of different sizes (resize them first).
        """
        if not pairs:
            raise ValueError('no training pairs to put on the device')
        sizes = {label.shape for _, label in pairs}
        if len(sizes) != 1:
            raise ValueError(f'training on the device needs one image size, got '
                             f'{len(sizes)} ({sorted(sizes)[:3]}...): use --resize WxH')
        self.images = torch.from_numpy(np.stack([image for image, _ in pairs])) \
            .permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.from_numpy(np.stack([label for _, label in pairs])).to(device)
        self.augment = augment
        self.device = device

    def __len__(self) -> int:
        """Return the number of pairs."""
        return self.labels.shape[0]

    def epoch(self, batch_size: int, steps: int,
              generator: torch.Generator) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``steps`` augmented batches of one epoch in a random order.

        A batch has ``batch_size`` pairs, except a shorter last one when ``steps`` batches
        need more pairs than a full permutation's whole batches (as a data loader that
        keeps its last partial batch).
        """
        order = torch.randperm(len(self), generator=generator, device=self.device)
        for step in range(steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            yield self.augment(self.images[index], self.labels[index], generator)
