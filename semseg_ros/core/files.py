"""Output files written atomically: complete under their name, or absent."""

import contextlib
import os
from pathlib import Path
import tempfile
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The parent folder is created. On an error the temporary file is removed and ``path``
    is left as it was, so readers never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.part', dir=path.parent)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_root() -> Path:
    """Return the folder derived files (graphs, vocabularies) are cached under.

    ``$SEMSEG_ROS_CACHE``; else ``$ROS_HOME/semseg_ros`` when ``ROS_HOME`` is set; else
    ``$XDG_CACHE_HOME/semseg_ros`` (``~/.cache`` when unset). Never the installed package: on
    a robot it is often read-only and shared.
    """
    if os.environ.get('SEMSEG_ROS_CACHE'):
        return Path(os.environ['SEMSEG_ROS_CACHE']).expanduser()
    if os.environ.get('ROS_HOME'):
        return Path(os.environ['ROS_HOME']).expanduser() / 'semseg_ros'
    base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return Path(base) / 'semseg_ros'


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Write a text file atomically; return its path."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_png(path: Union[str, Path], image) -> Path:
    """Write a PNG atomically; ``image`` is ``H x W`` (mono) or ``H x W x 3`` RGB uint8.

    Raises:
        OSError: The image cannot be encoded or the file cannot be written.
    """
    import cv2
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'cannot encode {path} as PNG')
    with atomic_output(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)
