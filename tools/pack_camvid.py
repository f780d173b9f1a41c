"""Write a compact copy of a CamVid folder (SegNet layout) to carry to another machine.

Images become JPEG (quality 90 by default), labels stay lossless PNG, and each split's list
file is rewritten to match: CamVid train + val shrink from 120 MB to about 27 MB, small
enough to travel with a checkout (keep the copy in a git-ignored folder such as ``.data/``)::

    python tools/pack_camvid.py ../shared/datasets/camvid .data/camvid [--splits train val]
"""

import argparse
from pathlib import Path
import sys

import cv2


def pack(source: Path, target: Path, splits, quality: int) -> int:
    """Copy the splits' pairs from ``source`` to ``target``; return the number of pairs."""
    count = 0
    for split in splits:
        list_file = source / f'{split}.txt'
        if not list_file.is_file():
            raise SystemExit(f'{list_file}: no list of split {split!r}')
        lines = []
        for line in list_file.read_text().split('\n'):
            if not line.strip():
                continue
            image_name, label_name = (Path(*Path(f).parts[-2:]) for f in line.split())
            image = cv2.imread(str(source / image_name), cv2.IMREAD_COLOR)
            label = cv2.imread(str(source / label_name), cv2.IMREAD_UNCHANGED)
            if image is None or label is None:
                raise SystemExit(f'{source / image_name} or {source / label_name}: unreadable')
            jpeg = image_name.with_suffix('.jpg')
            for path in (target / jpeg, target / label_name):
                path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target / jpeg), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            cv2.imwrite(str(target / label_name), label)
            lines.append(f'{jpeg} {label_name}')
            count += 1
        (target / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return count


def main() -> int:
    """Parse the command line and pack."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', type=Path, help='CamVid folder (SegNet layout)')
    parser.add_argument('target', type=Path, help='folder to write')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--quality', type=int, default=90, help='JPEG quality (default 90)')
    args = parser.parse_args()
    count = pack(args.source, args.target, args.splits, args.quality)
    print(f'{args.target}: {count} pairs')
    return 0


if __name__ == '__main__':
    sys.exit(main())
