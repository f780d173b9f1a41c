"""Datasets on real CamVid files, bad data built in tmp_path, and training augmentation."""

from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml

from semseg_ros.data.datasets import (
    build_dataset, CamVidDataset, CityscapesDataset, FolderDataset, parse_sequences, read_image,
    sequence_of)
from semseg_ros.data.device_augment import DeviceAugmentation, DeviceBatches, epoch_generator
from semseg_ros.data.transforms import resize_pair, to_network_input, TrainAugmentation
from semseg_ros.training.train import AUGMENTATIONS


def _camvid_copy(camvid: Path, root: Path, split: str, count: int) -> Path:
    """Copy ``count`` real CamVid train pairs into a SegNet-layout folder ``root``."""
    lines = (camvid / 'train.txt').read_text().split('\n')[:count]
    for line in lines:
        for rel in line.split():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(camvid / rel, root / rel)
    (root / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return root


def test_camvid_train_samples(camvid):
    """CamVid train: 367 pairs of 480x360 RGB uint8 images and uint8 labels in 0..11."""
    dataset = CamVidDataset(camvid, 'train')
    assert len(dataset) == 367
    dataset.pairs = dataset.pairs[:3]
    dataset.validate()
    assert dataset.cached and dataset.uniform_size() == (480, 360)
    image, label = dataset[2]
    assert image.shape == (3, 360, 480) and image.dtype.is_floating_point is False
    assert label.shape == (360, 480) and int(label.max()) <= 11
    assert dataset.num_classes == 11 and dataset.ignore_index == 11
    x = to_network_input(image[None])
    assert x.dtype.is_floating_point and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_images_are_rgb(tmp_path):
    """A pure red PNG (written by cv2 in BGR order) reads back as RGB (255, 0, 0)."""
    path = tmp_path / 'red.png'
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 255
    cv2.imwrite(str(path), bgr)
    assert read_image(path)[0, 0].tolist() == [255, 0, 0]


def test_any_camvid_split_with_a_list_file(camvid, tmp_path):
    """A 'test' split works from test.txt; a split without a list names the missing file."""
    root = _camvid_copy(camvid, tmp_path / 'camvid', 'test', 2)
    dataset = build_dataset('camvid', root, 'test')
    dataset.validate()
    assert len(dataset) == 2
    with pytest.raises(ValueError, match='extra.txt'):
        CamVidDataset(root, 'extra')
    with pytest.raises(ValueError, match='data root folder not found'):
        build_dataset('camvid', tmp_path / 'nowhere', 'train')


@pytest.mark.parametrize('damage, message', [
    ('missing', 'cannot read file'),
    ('unreadable', 'cannot decode'),
    ('out_of_range', r'label ids \[12, 40\]'),
    ('size', 'label is 240x180 but its image'),
    ('rgb_label', 'single-channel 8-bit'),
])
def test_bad_camvid_data_is_named(camvid, tmp_path, damage, message):
    """validate() refuses each kind of bad pair and names the file at fault."""
    root = _camvid_copy(camvid, tmp_path / 'camvid', 'train', 3)
    image_rel, label_rel = (root / 'train.txt').read_text().split('\n')[1].split()
    bad = root / label_rel
    if damage == 'missing':
        bad.unlink()
    elif damage == 'unreadable':
        bad = root / image_rel
        bad.write_bytes(b'not a png at all')
    elif damage == 'out_of_range':
        label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
        label[0, :5], label[1, :5] = 12, 40
        cv2.imwrite(str(bad), label)
    elif damage == 'size':
        label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(bad), cv2.resize(label, (240, 180), interpolation=cv2.INTER_NEAREST))
    elif damage == 'rgb_label':
        cv2.imwrite(str(bad), np.zeros((360, 480, 3), np.uint8))
    dataset = CamVidDataset(root, 'train')
    with pytest.raises(ValueError, match=message) as error:
        dataset.validate()
    assert str(bad) in str(error.value)
    assert '1 bad of 3 pairs' in str(error.value)


def test_malformed_list_line_is_named(tmp_path):
    """A list line without two paths names the list file and line number."""
    (tmp_path / 'train.txt').write_text('a.png b.png\nonly_one.png\n')
    with pytest.raises(ValueError, match=r'train.txt:2: expected "image label"'):
        CamVidDataset(tmp_path, 'train')


def _write_pair(images: Path, labels: Path, stem: str, label_value: int, size=(32, 24)):
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    width, height = size
    image = np.full((height, width, 3), 90, np.uint8)
    label = np.zeros((height, width), np.uint8)
    label[:, width // 2:] = label_value
    cv2.imwrite(str(images / f'{stem}.jpg'), image)
    cv2.imwrite(str(labels / f'{stem}.png'), label)


def test_folder_dataset_with_own_class_set(tmp_path):
    """Images and same-named label PNGs with a YAML class set train like CamVid."""
    classes = {'name': 'yard', 'ignore_index': 255,
               'classes': [{'name': 'grass', 'color': [0, 200, 0]},
                           {'name': 'path', 'color': [150, 150, 150]},
                           {'name': 'wall', 'color': [200, 0, 0]}]}
    (tmp_path / 'classes.yaml').write_text(yaml.safe_dump(classes))
    _write_pair(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train', 'a', 1)
    _write_pair(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train', 'b', 255)
    dataset = build_dataset('folder', tmp_path, 'train')
    dataset.validate()
    assert dataset.class_set.names == ('grass', 'path', 'wall') and len(dataset) == 2
    pixels, image_pixels = dataset.label_statistics()
    # a: half grass, half path; b: half grass, half void. 32x24 = 768 pixels per image.
    assert pixels.tolist() == [768, 384, 0]
    assert image_pixels.tolist() == [1536, 768, 0]

    _write_pair(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train', 'c', 3)
    with pytest.raises(ValueError, match=r'c.png: label ids \[3\]'):
        FolderDataset(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train',
                      tmp_path / 'classes.yaml').validate()


def test_folder_dataset_missing_partner_is_named(tmp_path):
    """An image without a label, or a label without an image, is named."""
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    _write_pair(images, labels, 'a', 1)
    _write_pair(images, labels, 'b', 1)
    (labels / 'b.png').unlink()
    cv2.imwrite(str(labels / 'orphan.png'), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError) as error:
        FolderDataset(images, labels, 'camvid')
    assert 'b.jpg: no label' in str(error.value)
    assert 'orphan.png: no image' in str(error.value)


def test_cityscapes_layout_train_ids_and_raw_ids(tmp_path):
    """Cityscapes pairs by city; raw label ids map to train ids (26 car -> 13, 0 -> 255)."""
    city = 'aachen'
    images = tmp_path / 'leftImg8bit' / 'val' / city
    labels = tmp_path / 'gtFine' / 'val' / city
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    stem = f'{city}_000000_000019'
    cv2.imwrite(str(images / f'{stem}_leftImg8bit.png'), np.full((16, 32, 3), 50, np.uint8))
    raw = np.zeros((16, 32), np.uint8)
    raw[:, 16:] = 26
    cv2.imwrite(str(labels / f'{stem}_gtFine_labelIds.png'), raw)
    dataset = CityscapesDataset(tmp_path, 'val')
    dataset.validate()
    label = dataset[0][1].numpy()
    assert dataset.num_classes == 19 and dataset.ignore_index == 255
    assert set(np.unique(label[:, :16])) == {255} and set(np.unique(label[:, 16:])) == {13}

    train_ids = raw.copy()
    train_ids[:, 16:] = 13
    train_ids[:, :16] = 19  # beyond the 19 classes
    cv2.imwrite(str(labels / f'{stem}_gtFine_labelTrainIds.png'), train_ids)
    with pytest.raises(ValueError, match=r'labelTrainIds.png: label ids \[19\]'):
        CityscapesDataset(tmp_path, 'val').validate()
    with pytest.raises(ValueError, match='Cityscapes images of split'):
        CityscapesDataset(tmp_path, 'train')


def test_augmentation_crop_flip_scale_and_determinism(camvid):
    """Crops have the asked size and valid ids; flip mirrors; the same seed repeats."""
    dataset = CamVidDataset(camvid, 'train')
    dataset.pairs = dataset.pairs[:1]
    dataset.validate()
    image, label = dataset.load_pair(0)

    flip_only = TrainAugmentation((480, 360), 11, scale_range=(1.0, 1.0), translate=0.0,
                                  brightness=0.0, contrast=0.0)
    flips = 0
    for seed in range(6):
        out_image, out_label = flip_only(image, label, np.random.default_rng(seed))
        if np.array_equal(out_label, label[:, ::-1]):
            flips += 1
            np.testing.assert_array_equal(out_image, image[:, ::-1])
        else:
            np.testing.assert_array_equal(out_label, label)
    assert 0 < flips < 6

    augment = TrainAugmentation((352, 256), 11)
    dataset.augment = augment
    first, again = dataset[0], dataset[0]
    assert first[0].shape == (3, 256, 352) and first[1].shape == (256, 352)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    dataset.set_epoch(1)
    assert not np.array_equal(dataset[0][0], first[0])
    assert set(np.unique(first[1].numpy())) <= set(range(12))

    shrink = TrainAugmentation((480, 360), 11, scale_range=(0.5, 0.5), translate=0.0,
                               brightness=0.0, contrast=0.0)
    out_image, out_label = shrink(image, label, np.random.default_rng(0))
    # A half-size frame covers a quarter of the crop: the rest is void label, black image.
    padded = out_image.max(axis=-1) == 0
    assert padded.mean() >= 0.74
    assert (out_label[padded] == 11).all()


def test_sequences_joined_splits_and_hold_out(camvid):
    """Frames know their sequence; splits join with +; sequences are kept or held out."""
    assert sequence_of('train/0001TP_006690.png') == '0001TP'
    assert sequence_of('0006R0_f01260.png') == '0006R0'
    assert parse_sequences(' 0006R0, 0001TP,') == ['0006R0', '0001TP']
    both = build_dataset('camvid', camvid, 'train+val')
    train, val = build_dataset('camvid', camvid, 'train'), build_dataset('camvid', camvid, 'val')
    assert both.pairs == train.pairs + val.pairs
    assert 'train+val' in both.name
    held = build_dataset('camvid', camvid, 'train+val', sequences=['0006R0'])
    rest = build_dataset('camvid', camvid, 'train+val', exclude_sequences=['0006R0'])
    assert {sequence_of(image) for image, _ in held.pairs} == {'0006R0'}
    assert '0006R0' not in {sequence_of(image) for image, _ in rest.pairs}
    assert len(held) + len(rest) == len(both)
    with pytest.raises(ValueError, match='no frames of sequence.*Seq05VD.*0001TP, 0006R0'):
        build_dataset('camvid', camvid, 'train', sequences=['Seq05VD'])
    with pytest.raises(ValueError, match='no frames left'):
        build_dataset('camvid', camvid, 'val', exclude_sequences=['0016E5'])


def _frame_batch(camvid, count=4):
    dataset = CamVidDataset(camvid, 'train')
    dataset.pairs = dataset.pairs[:count]
    dataset.validate()
    pairs = [dataset.load_pair(i) for i in range(count)]
    images = torch.from_numpy(np.stack([i for i, _ in pairs])).permute(0, 3, 1, 2).contiguous()
    return pairs, images, torch.from_numpy(np.stack([lab for _, lab in pairs]))


def test_device_augmentation_geometry(camvid):
    """On tensors: identity is exact, flips mirror, shrinking pads with black and void."""
    pairs, images, labels = _frame_batch(camvid)
    still = DeviceAugmentation((480, 360), 11, scale_range=(1.0, 1.0), flip=False,
                               translate=0.0, brightness=0.0, contrast=0.0)
    out_images, out_labels = still(images, labels, epoch_generator(torch.device('cpu'), 0))
    assert out_images.dtype == torch.uint8 and out_labels.dtype == torch.int64
    assert torch.equal(out_images, images) and torch.equal(out_labels, labels.long())

    flip_only = DeviceAugmentation((480, 360), 11, scale_range=(1.0, 1.0), translate=0.0,
                                   brightness=0.0, contrast=0.0)
    flips = 0
    for seed in range(3):
        out_images, out_labels = flip_only(images, labels,
                                           epoch_generator(torch.device('cpu'), seed))
        for n in range(len(pairs)):
            if torch.equal(out_labels[n], labels[n].flip(-1).long()):
                flips += 1
                assert torch.equal(out_images[n], images[n].flip(-1))
            else:
                assert torch.equal(out_labels[n], labels[n].long())
                assert torch.equal(out_images[n], images[n])
    assert 0 < flips < 3 * len(pairs)

    shrink = DeviceAugmentation((480, 360), 11, scale_range=(0.5, 0.5), translate=0.0,
                                brightness=0.0, contrast=0.0)
    out_images, out_labels = shrink(images, labels, epoch_generator(torch.device('cpu'), 0))
    padded = out_images.amax(dim=1) == 0
    assert padded.float().mean() >= 0.74
    assert (out_labels[padded] == 11).all()
    # Where the frame lands, labels are its own ids, sampled every second pixel.
    assert set(out_labels[~padded].unique().tolist()) <= set(range(12))


def test_device_augmentation_matches_cpu_statistics_and_repeats(camvid):
    """Random crops look like the CPU augmentation's; a seed repeats, another differs."""
    pairs, images, labels = _frame_batch(camvid)
    device_augment = DeviceAugmentation((352, 256), 11)
    cpu_augment = TrainAugmentation((352, 256), 11)
    first = device_augment(images, labels, epoch_generator(torch.device('cpu'), 0, 1))
    again = device_augment(images, labels, epoch_generator(torch.device('cpu'), 0, 1))
    other = device_augment(images, labels, epoch_generator(torch.device('cpu'), 0, 2))
    assert first[0].shape == (4, 3, 256, 352) and first[1].shape == (4, 256, 352)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    # Over many draws, void share and mean brightness agree with the CPU pipeline's.
    device_void, cpu_void, device_mean, cpu_mean = [], [], [], []
    for seed in range(12):
        out_images, out_labels = device_augment(images, labels,
                                                epoch_generator(torch.device('cpu'), seed))
        device_void.append((out_labels == 11).float().mean().item())
        device_mean.append(out_images.float().mean().item())
        for n, (image, label) in enumerate(pairs):
            cpu_image, cpu_label = cpu_augment(image, label, np.random.default_rng((seed, n)))
            cpu_void.append((cpu_label == 11).mean())
            cpu_mean.append(cpu_image.mean())
    assert abs(np.mean(device_void) - np.mean(cpu_void)) < 0.08
    assert abs(np.mean(device_mean) - np.mean(cpu_mean)) < 12


def _window_origins(out_image, out_label, image, label, reach):
    """Return every (flip, x0, y0) whose crop of the frame (flipped or not), padded by
    ``reach`` pixels of black and void (11), is exactly the augmented pair."""
    out_image, out_label = np.asarray(out_image), np.asarray(out_label)
    crop_h, crop_w = out_label.shape
    height, width = label.shape
    found = []
    for flip in (False, True):
        frame, ids = (image[:, ::-1], label[:, ::-1]) if flip else (image, label)
        frame = np.pad(frame, ((reach, reach), (reach, reach), (0, 0)))
        ids = np.pad(ids, reach, constant_values=11)
        for y0 in range(-reach, height - crop_h + reach + 1):
            for x0 in range(-reach, width - crop_w + reach + 1):
                rows = slice(reach + y0, reach + y0 + crop_h)
                cols = slice(reach + x0, reach + x0 + crop_w)
                if np.array_equal(ids[rows, cols], out_label) \
                        and np.array_equal(frame[rows, cols], out_image):
                    found.append((flip, x0, y0))
    return found


def _flip_translate_draws(pairs, crop, seeds, reach):
    """Augment the pairs with --augment flip-translate on both pipelines; return the
    (flip, x0, y0) each output is an exact crop at, per pipeline, checking the label ids."""
    settings = AUGMENTATIONS['flip-translate']
    cpu_augment = TrainAugmentation(crop, 11, **settings)
    device_augment = DeviceAugmentation(crop, 11, **settings)
    images = torch.from_numpy(np.stack([i for i, _ in pairs])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.stack([lab for _, lab in pairs]))
    draws = {'loader': [], 'device': []}
    for seed in seeds:
        out_images, out_labels = device_augment(images, labels,
                                                epoch_generator(torch.device('cpu'), seed))
        for n, (image, label) in enumerate(pairs):
            cpu_image, cpu_label = cpu_augment(image, label, np.random.default_rng((seed, n)))
            outputs = {'loader': (cpu_image, cpu_label),
                       'device': (out_images[n].permute(1, 2, 0), out_labels[n])}
            for pipeline, (out_image, out_label) in outputs.items():
                assert set(np.unique(np.asarray(out_label))) <= set(range(12)), pipeline
                origins = _window_origins(out_image, out_label, image, label, reach)
                assert len(origins) == 1, (pipeline, seed, n, origins)
                draws[pipeline].append(origins[0])
    return draws


def test_flip_translate_shifts_whole_frames_by_at_most_2_pixels(camvid):
    """--augment flip-translate on whole 480x360 frames: each output, on either pipeline, is
    the frame (flipped or not) shifted by whole pixels, at most 2 in x and y, with black and
    void where it moved in, and both pipelines draw every shift and both flips."""
    pairs, _, _ = _frame_batch(camvid)
    draws = _flip_translate_draws(pairs, (480, 360), range(12), reach=3)
    for pipeline, drawn in draws.items():
        assert {x for _, x, _ in drawn} == set(range(-2, 3)), pipeline
        assert {y for _, _, y in drawn} == set(range(-2, 3)), pipeline
        assert 0.3 < np.mean([flip for flip, _, _ in drawn]) < 0.7, pipeline


def test_flip_translate_places_smaller_crops_in_whole_pixels(camvid):
    """With a crop smaller than the frame, flip-translate places it anywhere in the frame,
    in whole pixels, up to 2 pixels beyond its edges (no scaling, no blur), on both pipelines."""
    pairs, _, _ = _frame_batch(camvid)
    pairs = [resize_pair(image, label, (120, 90)) for image, label in pairs]
    draws = _flip_translate_draws(pairs, (96, 72), range(6), reach=4)
    for pipeline, drawn in draws.items():
        xs, ys = [x for _, x, _ in drawn], [y for _, _, y in drawn]
        assert -2 <= min(xs) and max(xs) <= 24 + 2 and -2 <= min(ys) and max(ys) <= 18 + 2
        assert max(xs) - min(xs) > 8 and max(ys) - min(ys) > 6, pipeline


def test_device_batches_serve_whole_epochs(camvid):
    """An epoch visits every pair once in batches; one image size is required."""
    pairs, _, _ = _frame_batch(camvid, count=5)
    still = DeviceAugmentation((480, 360), 11, scale_range=(1.0, 1.0), flip=False,
                               translate=0.0, brightness=0.0, contrast=0.0)
    batches = DeviceBatches(pairs, still, torch.device('cpu'))
    served = list(batches.epoch(2, 3, epoch_generator(torch.device('cpu'), 0)))
    assert [len(b[0]) for b in served] == [2, 2, 1]
    seen = sorted(next(i for i, stored in enumerate(batches.images) if torch.equal(img, stored))
                  for batch in served for img in batch[0])
    assert seen == list(range(5))
    with pytest.raises(ValueError, match='one image size.*--resize'):
        DeviceBatches([pairs[0], (pairs[1][0][:100], pairs[1][1][:100])], still,
                      torch.device('cpu'))
