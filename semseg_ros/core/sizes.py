"""Image sizes written ``WxH`` (``512x256``): the one parser every command and config uses."""

import argparse
from typing import Tuple


class SizeError(ValueError, argparse.ArgumentTypeError):
    """A size that is not two positive integers joined by ``x``.

    A ValueError for library callers; argparse shows its message as it is.
    """


def parse_size(text: str) -> Tuple[int, int]:
    """Parse ``WxH`` (e.g. ``480x360``, any case) into ``(width, height)``.

    Raises:
        SizeError: Not two positive integers joined by ``x``.
    """
    try:
        width, height = (int(v) for v in str(text).lower().split('x'))
    except ValueError:
        raise SizeError(f'size {text!r} is not WIDTHxHEIGHT, e.g. 512x256') from None
    if width <= 0 or height <= 0:
        raise SizeError(f'size {text!r} must have a positive width and height')
    return width, height
