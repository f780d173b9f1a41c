"""Segmentation metrics from a confusion matrix: IoU, mIoU, pixel and class accuracy.

Rows of the matrix are ground-truth classes, columns predicted classes. Pixels whose
ground truth is the ignore id are not counted. A class that appears neither in the ground
truth nor in the predictions has no IoU (NaN) and is left out of the mean, as in the
usual CamVid and Cityscapes protocols. A pixel predicted unlabelled (LabelInfo's 255, which
the segmentation node writes under its confidence threshold) is a miss of its true class
that no class is charged for: it lowers that class's IoU and recall and the pixel accuracy.
"""

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

from semseg_ros.core.classes import UNLABELED_ID


def _as_numpy(array) -> np.ndarray:
    """Return a numpy view of a numpy array or a (possibly GPU) torch tensor."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, 'detach'):  # torch tensor; torch itself stays an optional import
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _json_number(value: float) -> Optional[float]:
    """Return a float for JSON, or None for NaN (JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value


class ConfusionMatrix:
    """An accumulating ``num_classes x num_classes`` confusion matrix.

    Attributes:
        num_classes: Number of real classes (void excluded).
        ignore_index: Ground-truth id that is not counted (None: every id counts).
        matrix: ``int64`` counts, ``matrix[true, predicted]``.
        unlabeled: ``int64`` counts per ground-truth class of pixels predicted unlabelled
            (:data:`UNLABELED_ID`, where it is not a class id).
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = None):
        """Create an empty matrix.

        Raises:
            ValueError: ``num_classes`` is not positive or ``ignore_index`` is a class id.
        """
        if num_classes < 1:
            raise ValueError(f'num_classes must be at least 1, got {num_classes}')
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f'ignore_index {ignore_index} is a class id (0..{num_classes - 1})')
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        self.unlabeled = np.zeros(num_classes, np.int64)
        self._unlabeled_id = UNLABELED_ID if num_classes <= UNLABELED_ID else None

    def reset(self) -> None:
        """Set every count to zero."""
        self.matrix[:] = 0
        self.unlabeled[:] = 0

    def update(self, pred, target) -> None:
        """Count a batch of predictions against its ground truth.

        Args:
            pred: Predicted class ids, any integer shape (numpy array or torch tensor).
            target: Ground-truth ids of the same shape; ``ignore_index`` pixels are skipped.

        Raises:
            ValueError: The shapes differ, or an id is outside ``0..num_classes-1`` (other
                than the ignore id in ``target`` and the unlabelled id in ``pred``).
        """
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f'prediction shape {tuple(pred.shape)} differs from ground-truth '
                             f'shape {tuple(target.shape)}')
        n = self.num_classes
        if hasattr(pred, 'detach') and hasattr(target, 'detach'):
            # torch: count on the tensors' device, move only n*n numbers
            import torch
            target = target.reshape(-1).long()
            pred = pred.reshape(-1).long()
            if self.ignore_index is not None:
                keep = target != self.ignore_index
                target, pred = target[keep], pred[keep]
            self._check_range(int(target.min()) if target.numel() else 0,
                              int(target.max()) if target.numel() else 0, 'ground-truth')
            if self._unlabeled_id is not None:
                missed = pred == self._unlabeled_id
                self.unlabeled += torch.bincount(target[missed], minlength=n).cpu().numpy()
                target, pred = target[~missed], pred[~missed]
            self._check_range(int(pred.min()) if pred.numel() else 0,
                              int(pred.max()) if pred.numel() else 0, 'predicted')
            counts = torch.bincount(target * n + pred, minlength=n * n)
            self.matrix += counts.cpu().numpy().reshape(n, n)
            return
        target = _as_numpy(target).reshape(-1).astype(np.int64, copy=False)
        pred = _as_numpy(pred).reshape(-1).astype(np.int64, copy=False)
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            target, pred = target[keep], pred[keep]
        if target.size:
            self._check_range(int(target.min()), int(target.max()), 'ground-truth')
            if self._unlabeled_id is not None:
                missed = pred == self._unlabeled_id
                self.unlabeled += np.bincount(target[missed], minlength=n)
                target, pred = target[~missed], pred[~missed]
        if target.size:
            self._check_range(int(pred.min()), int(pred.max()), 'predicted')
        self.matrix += np.bincount(target * n + pred, minlength=n * n).reshape(n, n)

    def _check_range(self, low: int, high: int, what: str) -> None:
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            ignore = '' if self.ignore_index is None else f' or the ignore id {self.ignore_index}'
            raise ValueError(f'{what} id {bad} is outside the class range '
                             f'0..{self.num_classes - 1}{ignore}')

    def merge(self, other: 'ConfusionMatrix') -> 'ConfusionMatrix':
        """Add another matrix's counts to this one (same class count); return self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f'cannot merge a {other.num_classes}-class confusion matrix into '
                             f'a {self.num_classes}-class one')
        self.matrix += other.matrix
        self.unlabeled += other.unlabeled
        return self

    def all_reduce(self) -> 'ConfusionMatrix':
        """Sum the counts over all processes of an initialised torch.distributed group.

        Does nothing when torch.distributed is not initialised, so the same code runs
        with and without DistributedDataParallel. Returns self.
        """
        import torch
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = 'cuda' if dist.get_backend() == 'nccl' else 'cpu'
        counts = torch.from_numpy(np.concatenate([self.matrix.ravel(), self.unlabeled]))
        counts = counts.to(device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        counts = counts.cpu().numpy()
        self.matrix[:] = counts[:self.matrix.size].reshape(self.matrix.shape)
        self.unlabeled[:] = counts[self.matrix.size:]
        return self

    @property
    def total(self) -> int:
        """Number of counted (non-ignored) pixels, those predicted unlabelled included."""
        return int(self.matrix.sum() + self.unlabeled.sum())

    def iou(self) -> np.ndarray:
        """Per-class intersection over union ``TP / (TP + FP + FN)``; NaN for absent classes.

        FN includes the class's pixels predicted unlabelled.
        """
        true_positive = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) + self.unlabeled - true_positive
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes present in ground truth or prediction (NaN if none)."""
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels predicted correctly (NaN if none counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float('nan')

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall ``TP / (TP + FN)``; NaN for classes absent from the ground truth."""
        true_positive = np.diag(self.matrix).astype(np.float64)
        support = self.matrix.sum(1) + self.unlabeled
        return np.where(support > 0, true_positive / np.maximum(support, 1), np.nan)

    def mean_class_accuracy(self) -> float:
        """Mean of :meth:`class_accuracy` over the classes present in the ground truth."""
        return _nanmean(self.class_accuracy())

    def normalized(self) -> np.ndarray:
        """Row-normalised matrix (each ground-truth class sums to 1; empty rows stay 0)."""
        support = self.matrix.sum(1, keepdims=True)
        return self.matrix / np.maximum(support, 1)

    def as_dict(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """Return every figure as plain JSON types (NaN written as None).

        Args:
            class_names: One name per class (default: ``'0'``, ``'1'``...).

        Raises:
            ValueError: ``class_names`` has the wrong length.
        """
        names = [str(i) for i in range(self.num_classes)] if class_names is None \
            else [str(n) for n in class_names]
        if len(names) != self.num_classes:
            raise ValueError(f'{len(names)} class names given for {self.num_classes} classes')
        iou = self.iou()
        accuracy = self.class_accuracy()
        return {
            'miou': _json_number(self.miou()),
            'pixel_accuracy': _json_number(self.pixel_accuracy()),
            'mean_class_accuracy': _json_number(self.mean_class_accuracy()),
            'pixels': self.total,
            'class_names': names,
            'iou': {n: _json_number(v) for n, v in zip(names, iou)},
            'class_accuracy': {n: _json_number(v) for n, v in zip(names, accuracy)},
            'confusion_matrix': self.matrix.tolist(),
            'unlabeled': self.unlabeled.tolist(),
            'ignore_index': self.ignore_index,
        }


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values, NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float('nan')
