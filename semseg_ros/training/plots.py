"""Training and evaluation plots: confusion matrix, per-class IoU, training curves (PNG).

Uses matplotlib's object API on the Agg canvas (no pyplot state, no display needed).
Files are written under a temporary name and renamed, so a PNG is complete or absent.
"""

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from semseg_ros.core.files import atomic_output


def _save(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(figure)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format='png', dpi=100)
    return Path(path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path,
                          title: str = 'Confusion matrix (rows: ground truth)') -> Path:
    """Draw a row-normalised confusion-matrix heat map with class names and percentages.

    Args:
        matrix: ``C x C`` counts, rows ground truth, columns prediction.
        class_names: One name per class.
        path: PNG file to write.
        title: Figure title.
    """
    from matplotlib.figure import Figure
    counts = np.asarray(matrix, np.float64)
    normalised = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(5.0, 0.55 * n + 2.5)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap='Blues', vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label='fraction of row')
    axes.set_xticks(range(n), labels=class_names, rotation=60, ha='right')
    axes.set_yticks(range(n), labels=class_names)
    axes.set_xlabel('predicted')
    axes.set_ylabel('ground truth')
    axes.set_title(title)
    if n <= 30:
        for row in range(n):
            for col in range(n):
                value = normalised[row, col]
                if value >= 0.005:
                    axes.text(col, row, f'{100 * value:.0f}', ha='center', va='center',
                              fontsize=7, color='white' if value > 0.5 else 'black')
    figure.tight_layout()
    return _save(figure, path)


def plot_class_iou(iou: Sequence[Optional[float]], class_names: Sequence[str], path: Path,
                   title: str = 'Per-class IoU') -> Path:
    """Draw per-class IoU as bars with the mean IoU as a line (absent classes left empty).

    Args:
        iou: IoU per class in [0, 1]; None or NaN for a class absent from the data.
        class_names: One name per class.
        path: PNG file to write.
        title: Figure title.
    """
    from matplotlib.figure import Figure
    values = np.array([np.nan if v is None else float(v) for v in iou])
    present = ~np.isnan(values)
    n = len(class_names)
    figure = Figure(figsize=(max(6.0, 0.5 * n + 2.0), 4.5))
    axes = figure.add_subplot()
    bars = axes.bar(range(n), np.where(present, values, 0.0), color='tab:blue')
    for bar, value, shown in zip(bars, values, present):
        if shown:
            axes.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f'{value:.2f}',
                      ha='center', va='bottom', fontsize=7)
    if present.any():
        mean = float(values[present].mean())
        axes.axhline(mean, color='tab:red', linestyle='--', label=f'mIoU {mean:.3f}')
        axes.legend(loc='best')
    axes.set_xticks(range(n), labels=class_names, rotation=60, ha='right')
    axes.set_ylim(0.0, 1.08)
    axes.set_ylabel('IoU')
    axes.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_training_curves(histories: Mapping[str, Sequence[Mapping]], path: Path,
                         title: str = 'Training on CamVid') -> Path:
    """Draw training loss and validation mIoU against the epoch, one colour per run.

    Args:
        histories: Run name (e.g. the model) -> its per-epoch log entries, each with
            ``epoch`` and ``loss`` and, on validated epochs, ``val_miou`` (others None).
        path: PNG file to write.
        title: Figure title.
    """
    from matplotlib.figure import Figure
    figure = Figure(figsize=(10.0, 4.0))
    loss_axes, miou_axes = figure.subplots(1, 2)
    for index, (name, history) in enumerate(histories.items()):
        color = f'C{index}'
        epochs = [int(h['epoch']) for h in history]
        loss_axes.plot(epochs, [float(h['loss']) for h in history], color=color, label=name)
        validated = [h for h in history if h.get('val_miou') is not None]
        if validated:
            best = max(validated, key=lambda h: h['val_miou'])
            miou_axes.plot([h['epoch'] for h in validated],
                           [100 * h['val_miou'] for h in validated], 'o-', color=color,
                           markersize=3, label=f'{name} (best {100 * best["val_miou"]:.1f} '
                           f'@ {best["epoch"]})')
    loss_axes.set_xlabel('epoch')
    loss_axes.set_ylabel('training loss (weighted cross-entropy)')
    miou_axes.set_xlabel('epoch')
    miou_axes.set_ylabel('val mIoU (%)')
    for axes in (loss_axes, miou_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc='best', fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)
