"""Segmentation datasets: CamVid (SegNet layout), Cityscapes and a folder of the user's own.

Every dataset is a list of (image file, label file) pairs and a class set. Samples are
``(image, label)`` with ``image`` a ``3 x H x W`` uint8 RGB tensor and ``label`` an
``H x W`` uint8 tensor of class ids (the class set's ignore id for void); see
:mod:`semseg_ros.data.transforms` for how images become network input.

Call :meth:`SegmentationDataset.validate` before training: it reads every pair once and
raises a ValueError naming each bad file (missing pair, unreadable file, label ids outside
the class set, image and label of different size). Decoded pairs are kept in RAM when they
fit (``cache``), so PNGs are decoded once per run instead of once per epoch.
"""

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from semseg_ros.core.classes import ClassSet, load_class_set
from semseg_ros.data.transforms import image_to_tensor, resize_pair, TrainAugmentation

PathLike = Union[str, Path]
Pair = Tuple[Path, Path]

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')
DATASETS = ('camvid', 'cityscapes', 'folder')
# Cache decoded pairs in RAM when they take at most this many bytes (auto mode).
CACHE_LIMIT_BYTES = 3 * 1024 ** 3
# Errors listed in one ValueError from validate(); more are counted, not listed.
MAX_LISTED_ERRORS = 20

# Cityscapes label id -> train id (cityscapesScripts labels.py); ids not listed -> 255.
CITYSCAPES_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8,
                             22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16,
                             32: 17, 33: 18}


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as ``H x W x 3`` uint8 RGB.

    Raises:
        ValueError: The file is missing or cannot be decoded as a colour image.
    """
    image = _decode(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # cv2 decodes to BGR


def read_label(path: PathLike) -> np.ndarray:
    """Read a label file as ``H x W`` uint8 class ids.

    Raises:
        ValueError: The file is missing, cannot be decoded, or is not single-channel 8-bit.
    """
    label = _decode(path, cv2.IMREAD_UNCHANGED)
    if label.ndim != 2 or label.dtype != np.uint8:
        channels = 1 if label.ndim == 2 else label.shape[2]
        raise ValueError(f'{path}: a label must be a single-channel 8-bit image of class ids, '
                         f'got {channels} channel(s) of {label.dtype}')
    return label


def _decode(path: PathLike, flags: int) -> np.ndarray:
    """Decode an image file with cv2, raising a ValueError that names the file."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ValueError(f'{path}: cannot read file ({error.strerror or error})') from error
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ValueError(f'{path}: cannot decode the file as an image')
    return image


class SegmentationDataset(Dataset):
    """Image/label pairs with a class set, optional augmentation and an in-RAM cache.

    Attributes:
        pairs: (image path, label path) per sample.
        class_set: The classes the label ids refer to.
        augment: Training augmentation (None: samples come as stored, or resized).
        resize: (width, height) every pair is resized to when read (None: keep).
        seed: Run seed; sample ``i`` of epoch ``e`` is augmented with a generator seeded
            by ``(seed, e, i)``, so results do not depend on worker count or order.
    """

    def __init__(self, pairs: Sequence[Pair], class_set: ClassSet,
                 augment: Optional[TrainAugmentation] = None,
                 resize: Optional[Tuple[int, int]] = None, cache: Union[bool, str] = 'auto',
                 seed: int = 0, label_map: Optional[np.ndarray] = None, name: str = 'dataset'):
        """Create a dataset over ``pairs``.

        Args:
            pairs: (image path, label path) per sample.
            class_set: Class set of the label ids.
            augment: Training augmentation, or None.
            resize: Resize pairs to (width, height) when read, or None.
            cache: True, False or ``'auto'`` (cache when it fits ``CACHE_LIMIT_BYTES``).
            seed: Run seed for augmentation.
            label_map: Optional 256-entry uint8 table applied to stored label ids.
            name: Name used in messages.

        Raises:
            ValueError: ``pairs`` is empty.
        """
        if not pairs:
            raise ValueError(f'{name}: no image/label pairs found')
        self.pairs: List[Pair] = [(Path(i), Path(lab)) for i, lab in pairs]
        self.class_set = class_set
        self.augment = augment
        self.resize = tuple(resize) if resize else None
        self.seed = int(seed)
        self.label_map = label_map
        self.name = name
        self._cache_mode = cache
        self._cache: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None
        self._sizes: Optional[List[Tuple[int, int]]] = None
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        """Number of classes of the class set."""
        return self.class_set.num_classes

    @property
    def ignore_index(self) -> int:
        """Label id of void pixels."""
        return self.class_set.ignore_index

    def __len__(self) -> int:
        """Return the number of pairs."""
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds augmentation (call before iterating each epoch)."""
        self.epoch = int(epoch)

    def load_pair(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return pair ``index`` as (RGB uint8 image, uint8 label), resized if asked."""
        if self._cache is not None:
            return self._cache[index]
        image_path, label_path = self.pairs[index]
        image, label = read_image(image_path), read_label(label_path)
        if self.label_map is not None:
            label = self.label_map[label]
        if self.resize:
            image, label = resize_pair(image, label, self.resize)
        return image, label

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(3 x H x W uint8 image, H x W uint8 label)``, augmented if set."""
        image, label = self.load_pair(index)
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            image, label = self.augment(image, label, rng)
        return image_to_tensor(image), torch.from_numpy(np.ascontiguousarray(label))

    def validate(self, progress: bool = False) -> None:
        """Read every pair once and check it; keep the decoded pairs if caching.

        Raises:
            ValueError: Listing each bad file: missing or unreadable, label ids outside
                ``0..num_classes-1`` other than the ignore id, or image and label sizes
                that differ.
        """
        from tqdm import tqdm
        errors: List[str] = []
        loaded: List[Tuple[np.ndarray, np.ndarray]] = []
        sizes: List[Tuple[int, int]] = []
        keep = self._cache_mode is True
        valid_ids = np.zeros(256, bool)
        valid_ids[:self.num_classes] = True
        if 0 <= self.ignore_index < 256:
            valid_ids[self.ignore_index] = True
        for index, (image_path, label_path) in enumerate(
                tqdm(self.pairs, desc=f'checking {self.name}', unit='pair', disable=not progress,
                     leave=False)):
            try:
                image, label = read_image(image_path), read_label(label_path)
            except ValueError as error:
                errors.append(str(error))
                continue
            if image.shape[:2] != label.shape:
                errors.append(f'{label_path}: label is {label.shape[1]}x{label.shape[0]} but '
                              f'its image {image_path} is {image.shape[1]}x{image.shape[0]}')
                continue
            if self.label_map is not None:
                label = self.label_map[label]
            bad = np.flatnonzero(~valid_ids & (np.bincount(label.ravel(), minlength=256) > 0))
            if bad.size:
                errors.append(f'{label_path}: label ids {bad.tolist()} are outside the '
                              f'{self.class_set.name} class set (0..{self.num_classes - 1}, '
                              f'ignore {self.ignore_index})')
                continue
            if self.resize:
                image, label = resize_pair(image, label, self.resize)
            sizes.append((image.shape[1], image.shape[0]))
            if self._cache_mode == 'auto' and len(sizes) == 1:
                estimate = (image.nbytes + label.nbytes) * len(self.pairs)
                keep = estimate <= CACHE_LIMIT_BYTES
            if keep:
                loaded.append((image, label))
        if errors:
            listed = errors[:MAX_LISTED_ERRORS]
            more = len(errors) - len(listed)
            raise ValueError(f'{self.name}: {len(errors)} bad of {len(self.pairs)} pairs:\n  '
                             + '\n  '.join(listed) + (f'\n  ... and {more} more' if more else ''))
        self._sizes = sizes
        self._cache = loaded if keep else None

    @property
    def cached(self) -> bool:
        """Whether the decoded pairs are held in RAM."""
        return self._cache is not None

    def uniform_size(self) -> Optional[Tuple[int, int]]:
        """Return (width, height) when every stored pair has that size, else None.

        Reads the pairs' sizes from :meth:`validate` (run it first).
        """
        if self._sizes is None:
            raise RuntimeError('call validate() before uniform_size()')
        return self._sizes[0] if len(set(self._sizes)) == 1 else None

    def label_statistics(self) -> Tuple[np.ndarray, np.ndarray]:
        """Count label pixels per class over the stored (not augmented) labels.

        Returns:
            ``(pixel_counts, image_pixel_counts)``: pixels of each class, and the total
            pixels of the images in which each class appears (for median frequency
            balancing). Both int64 arrays of length ``num_classes``.
        """
        n = self.num_classes
        pixel_counts = np.zeros(n, np.int64)
        image_pixel_counts = np.zeros(n, np.int64)
        for index in range(len(self)):
            label = self.load_pair(index)[1]
            counts = np.bincount(label.ravel(), minlength=256)[:n]
            pixel_counts += counts
            image_pixel_counts[counts > 0] += label.size
        return pixel_counts, image_pixel_counts


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f'{path}: {what} not found')
    return path


def camvid_pairs(root: PathLike, split: str) -> List[Pair]:
    """Read ``<root>/<split>.txt`` (lines ``image label`` relative to root, SegNet layout).

    Raises:
        ValueError: The list file is missing or a line does not hold two paths.
    """
    root = Path(root)
    list_file = _existing(root / f'{split}.txt',
                          f'CamVid list of split {split!r} (lines "image label" relative to '
                          f'{root})')
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f'{list_file}:{number}: expected "image label", got {line!r}')
        # Some SegNet lists carry absolute /SegNet/CamVid/... paths: keep the last 2 parts.
        pairs.append(tuple(root / Path(*Path(f).parts[-2:]) if Path(f).is_absolute()
                           else root / f for f in fields))
    return pairs


def cityscapes_pairs(root: PathLike, split: str) -> Tuple[List[Pair], bool]:
    """Find Cityscapes pairs: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with labels.

    Labels are ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``; when none exist, the
    raw ``*_gtFine_labelIds.png`` are used and mapped to train ids.

    Returns:
        (pairs, whether the labels are raw label ids needing the train-id map).

    Raises:
        ValueError: The split folder is missing or holds no images.
    """
    root = Path(root)
    image_dir = _existing(root / 'leftImg8bit' / split, f'Cityscapes images of split {split!r}')
    images = sorted(image_dir.glob('*/*_leftImg8bit.png'))
    if not images:
        raise ValueError(f'{image_dir}: no <city>/*_leftImg8bit.png images')
    label_dir = root / 'gtFine' / split
    raw = not any(label_dir.glob('*/*_gtFine_labelTrainIds.png'))
    suffix = '_gtFine_labelIds.png' if raw else '_gtFine_labelTrainIds.png'
    pairs = [(image, label_dir / image.parent.name
              / image.name.replace('_leftImg8bit.png', suffix)) for image in images]
    return pairs, raw


def folder_pairs(images_dir: PathLike, labels_dir: PathLike) -> List[Pair]:
    """Pair images with the label PNG of the same file stem in another folder.

    Raises:
        ValueError: A folder is missing or empty, or an image or label has no partner
            (naming the files).
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    _existing(images_dir, 'images folder')
    _existing(labels_dir, 'labels folder')
    images = {p.stem: p for p in sorted(images_dir.iterdir())
              if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() == '.png'}
    if not images:
        raise ValueError(f'{images_dir}: no images ({", ".join(IMAGE_SUFFIXES)})')
    missing = [f'{images[s]}: no label {labels_dir / (s + ".png")}'
               for s in sorted(images.keys() - labels.keys())]
    missing += [f'{labels[s]}: no image of the same name in {images_dir}'
                for s in sorted(labels.keys() - images.keys())]
    if missing:
        raise ValueError('image/label pairs missing:\n  ' + '\n  '.join(missing))
    return [(images[s], labels[s]) for s in sorted(images)]


class CamVidDataset(SegmentationDataset):
    """CamVid in the SegNet layout: ``<root>/<split>.txt`` lists ``image label`` pairs.

    Any split with a list file works (``train``, ``val``, ``test``...).
    """

    def __init__(self, root: PathLike, split: str, **kwargs):
        """Read the split's list; keyword arguments go to :class:`SegmentationDataset`."""
        super().__init__(camvid_pairs(root, split), load_class_set('camvid'),
                         name=f'CamVid {split} ({root})', **kwargs)


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations: 19 train-id classes, 255 ignored."""

    def __init__(self, root: PathLike, split: str, **kwargs):
        """Find the split's pairs; keyword arguments go to :class:`SegmentationDataset`."""
        pairs, raw = cityscapes_pairs(root, split)
        label_map = None
        if raw:
            label_map = np.full(256, 255, np.uint8)
            for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
                label_map[label_id] = train_id
        super().__init__(pairs, load_class_set('cityscapes'), label_map=label_map,
                         name=f'Cityscapes {split} ({root})', **kwargs)


class FolderDataset(SegmentationDataset):
    """The user's own data: images and same-named label PNGs in two folders."""

    def __init__(self, images_dir: PathLike, labels_dir: PathLike,
                 class_set_yaml: Union[PathLike, ClassSet], **kwargs):
        """Pair the folders' files.

        Args:
            images_dir: Folder of RGB images (png, jpg...).
            labels_dir: Folder of single-channel uint8 label PNGs, ``<image stem>.png``.
            class_set_yaml: Class-set YAML file (or shipped name, or a ClassSet).
            **kwargs: Passed to :class:`SegmentationDataset`.
        """
        class_set = class_set_yaml if isinstance(class_set_yaml, ClassSet) \
            else load_class_set(class_set_yaml)
        super().__init__(folder_pairs(images_dir, labels_dir), class_set,
                         name=f'folder {images_dir}', **kwargs)


def sequence_of(path: PathLike) -> str:
    """Return the sequence a frame belongs to: its file name up to the first underscore.

    CamVid names frames ``<sequence>_<frame>`` (``0001TP_006690.png``, ``0006R0_f01260.png``,
    ``Seq05VD_f00000.png``); Cityscapes names start with the city.
    """
    return Path(path).name.split('_', 1)[0]


def sequence_counts(pairs: Sequence[Pair]) -> Dict[str, int]:
    """Return the number of pairs of each sequence, by sequence name."""
    counts: Dict[str, int] = {}
    for image, _ in pairs:
        counts[sequence_of(image)] = counts.get(sequence_of(image), 0) + 1
    return dict(sorted(counts.items()))


def parse_sequences(text: Optional[str]) -> List[str]:
    """Parse a comma-separated list of sequence names (None or empty: none)."""
    return [s.strip() for s in (text or '').split(',') if s.strip()]


def select_sequences(dataset: SegmentationDataset, include: Sequence[str] = (),
                     exclude: Sequence[str] = ()) -> SegmentationDataset:
    """Keep only the pairs of the ``include`` sequences (all when empty), minus ``exclude``.

    Raises:
        ValueError: A named sequence is not in the dataset, or nothing is left; the message
            lists the sequences the dataset has.
    """
    have = sorted({sequence_of(image) for image, _ in dataset.pairs})
    unknown = sorted(set(include) - set(have))
    if unknown:
        raise ValueError(f'{dataset.name}: no frames of sequence(s) {", ".join(unknown)}; '
                         f'its sequences: {", ".join(have)}')
    kept = [(image, label) for image, label in dataset.pairs
            if (not include or sequence_of(image) in include)
            and sequence_of(image) not in exclude]
    if not kept:
        raise ValueError(f'{dataset.name}: no frames left after selecting sequences '
                         f'(include {list(include) or "all"}, exclude {list(exclude)}); its '
                         f'sequences: {", ".join(have)}')
    parts = ([f'sequences {",".join(include)}'] if include else []) \
        + ([f'without {",".join(exclude)}'] if exclude else [])
    dataset.pairs = kept
    if parts:
        dataset.name += ' ' + ' '.join(parts)
    return dataset


def build_dataset(name: str, root: PathLike, split: str, class_set: Optional[PathLike] = None,
                  sequences: Sequence[str] = (), exclude_sequences: Sequence[str] = (),
                  **kwargs) -> SegmentationDataset:
    """Build a dataset by name.

    Args:
        name: ``camvid``, ``cityscapes`` or ``folder``.
        root: Dataset folder. For ``folder``: ``<root>/images/<split>/`` and
            ``<root>/labels/<split>/``.
        split: Split name (``train``, ``val``, ``test``...), or several joined by ``+``
            (``train+val``).
        class_set: For ``folder``: class-set name or YAML path (default
            ``<root>/classes.yaml``). Must be None for the others.
        sequences: Keep only frames of these sequences (:func:`sequence_of`); empty: all.
        exclude_sequences: Leave out frames of these sequences.
        **kwargs: Passed to :class:`SegmentationDataset` (augment, resize, cache, seed).

    Raises:
        ValueError: Unknown dataset name, missing folder or list, missing pairs, or a
            sequence selection that leaves nothing.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f'{root}: data root folder not found')
    parts = [part for part in str(split).split('+') if part]
    if not parts:
        raise ValueError(f'split {split!r} names no split')
    datasets = [_build_one(name, root, part, class_set, **kwargs) for part in parts]
    dataset = datasets[0]
    for other in datasets[1:]:
        dataset.pairs += other.pairs
    if len(datasets) > 1:
        dataset.name = dataset.name.replace(f' {parts[0]} ', f' {split} ', 1)
    if sequences or exclude_sequences:
        select_sequences(dataset, sequences, exclude_sequences)
    return dataset


def _build_one(name: str, root: Path, split: str, class_set: Optional[PathLike],
               **kwargs) -> SegmentationDataset:
    if name == 'camvid':
        return CamVidDataset(root, split, **kwargs)
    if name == 'cityscapes':
        return CityscapesDataset(root, split, **kwargs)
    if name == 'folder':
        if class_set is None:
            class_set = _existing(root / 'classes.yaml', 'class-set file (give --class-set)')
        return FolderDataset(root / 'images' / split, root / 'labels' / split, class_set,
                             **kwargs)
    raise ValueError(f'unknown dataset {name!r}; valid datasets: {", ".join(DATASETS)}')
