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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Write a text file atomically; return its path."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
