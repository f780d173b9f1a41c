"""DBoW2 ORB vocabularies built from frames, in the text format ORB-SLAM2/3 load.

ORB-SLAM3 needs a bag-of-words vocabulary (``ORBvoc.txt``) to match features to keyframes
and to relocalise. Where the user has none, :func:`build_vocabulary` makes one the way DBoW2
does: hierarchical k-majority clustering of binary ORB descriptors (k-means++ seeds, Hamming
distance, bit-wise majority centres), ``k`` branches per node and ``depth`` levels, TF-IDF
word weights (``idf = ln(N / n_i)`` over the training images).

The text format (``TemplatedVocabulary::loadFromTextFile``): a first line ``k L scoring
weighting`` (``0 0``: L1 norm, TF-IDF), then one line per node but the root,
``parent is_leaf d_0 ... d_31 weight``, parents before their children (a node's id is its
line number). ORB-SLAM3 groups features by the node ``depth - 4`` levels up, so a depth below
5 leaves every feature in one group (matching falls back to brute force, tracking fails):
depth 5 or more is required.
"""

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from semseg_ros.core.files import atomic_output, cache_root

PathLike = Union[str, Path]

MIN_DEPTH = 5
DEFAULT_DEPTH = 5
DEFAULT_BRANCHING = 10
DEFAULT_FEATURES = 1000
# Environment variable naming the user's vocabulary (pyorbslam3's own): it wins over a build.
VOCABULARY_ENV = 'PYORBSLAM3_VOCAB'
_ITERATIONS = 10  # k-majority iterations per node (assignments rarely move after a few)


class VocabularyError(Exception):
    """A vocabulary cannot be built or read (message names the file and the problem)."""


def orb_extractor(features: int = DEFAULT_FEATURES) -> 'cv2.ORB':
    """Return an OpenCV ORB extractor set up as ORB-SLAM's (8 levels, scale 1.2, FAST 20)."""
    return cv2.ORB_create(nfeatures=features, scaleFactor=1.2, nlevels=8, fastThreshold=20)


def image_descriptors(images: Iterable[PathLike], features: int = DEFAULT_FEATURES,
                      progress: Optional[Callable[[int], None]] = None) -> List[np.ndarray]:
    """Return the ORB descriptors (``N x 32`` uint8) of each image file, in order.

    Raises:
        VocabularyError: An image cannot be read.
    """
    orb = orb_extractor(features)
    out = []
    for path in images:
        data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
        gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data is not None and data.size \
            else None
        if gray is None:
            raise VocabularyError(f'{path}: cannot read the file as an image')
        _, descriptors = orb.detectAndCompute(gray, None)
        out.append(np.zeros((0, 32), np.uint8) if descriptors is None else descriptors)
        if progress:
            progress(1)
    return out


_POPCOUNT = np.array([bin(i).count('1') for i in range(256)], dtype=np.uint8)


def hamming(descriptors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Return the ``N x K`` Hamming distances between ``N x 32`` and ``K x 32`` uint8 rows."""
    a = descriptors.view(np.uint64)
    b = centres.view(np.uint64)
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int32)


def majority(descriptors: np.ndarray) -> np.ndarray:
    """Return the bit-wise majority of ``N x 32`` uint8 descriptors (DBoW2's FORB mean).

    A bit is set when at least half the descriptors (rounded up) have it set.
    """
    bits = np.unpackbits(descriptors, axis=1).sum(axis=0, dtype=np.int64)
    return np.packbits(bits >= (len(descriptors) + 1) // 2)[None, :]


def k_majority(descriptors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster descriptors in at most ``k`` groups; return each descriptor's group (0..k-1).

    k-means++ seeding, then k-majority iterations until the assignment stops changing (DBoW2's
    ``HKmeansStep``). Groups that end up empty are dropped and the labels renumbered.
    """
    n = len(descriptors)
    if n <= k:
        return np.arange(n)
    centres = [descriptors[rng.integers(n)][None, :]]
    nearest = hamming(descriptors, centres[0])[:, 0].astype(np.float64)
    for _ in range(1, k):
        weights = nearest ** 2
        total = weights.sum()
        if total <= 0:
            break  # every descriptor equals a centre already
        pick = rng.choice(n, p=weights / total)
        centres.append(descriptors[pick][None, :])
        nearest = np.minimum(nearest, hamming(descriptors, centres[-1])[:, 0])
    centres = np.concatenate(centres)
    labels = np.full(n, -1)
    for _ in range(_ITERATIONS):
        new = hamming(descriptors, centres).argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        centres = np.concatenate([majority(descriptors[labels == c]) for c in range(len(centres))
                                  if np.any(labels == c)])
        _, labels = np.unique(labels, return_inverse=True)
    return labels


class Vocabulary:
    """A DBoW2 vocabulary tree: node parents, descriptors, leaf flags and word weights.

    Node 0 is the root; nodes are numbered so that parents come before children.
    """

    def __init__(self, k: int, depth: int):
        """Start an empty tree of branching ``k`` and ``depth`` levels."""
        self.k = k
        self.depth = depth
        self.parents: List[int] = [-1]
        self.descriptors: List[np.ndarray] = [np.zeros(32, np.uint8)]
        self.leaf: List[bool] = [False]
        self.weights: List[float] = [0.0]

    @property
    def words(self) -> int:
        """Return how many leaves (DBoW2 words) the tree has."""
        return sum(self.leaf)

    def add(self, parent: int, descriptor: np.ndarray) -> int:
        """Append a node under ``parent``; return its id."""
        self.parents.append(parent)
        self.descriptors.append(descriptor.reshape(32))
        self.leaf.append(False)
        self.weights.append(0.0)
        return len(self.parents) - 1

    def text(self) -> str:
        """Return the vocabulary in DBoW2's text format.

        No trailing newline: ORB-SLAM's loader would read an empty last line as a node.
        """
        lines = [f'{self.k} {self.depth} 0 0']
        for node in range(1, len(self.parents)):
            values = ' '.join(str(int(v)) for v in self.descriptors[node])
            lines.append(f'{self.parents[node]} {int(self.leaf[node])} {values} '
                         f'{self.weights[node]:.6g}')
        return '\n'.join(lines)


def build_vocabulary(per_image: Sequence[np.ndarray], k: int = DEFAULT_BRANCHING,
                     depth: int = DEFAULT_DEPTH, seed: int = 0,
                     progress: Optional[Callable[[int], None]] = None) -> Vocabulary:
    """Build a vocabulary from the ORB descriptors of each training image.

    Breadth first, level by level: a node with more than ``k`` descriptors is split by
    :func:`k_majority`, one with ``k`` or fewer gets one child per descriptor, and a node of a
    single descriptor or at ``depth`` is a word. ``progress(n)`` is told of each level's nodes.

    Raises:
        VocabularyError: Fewer than two descriptors, or a depth below 5 or k below 2.
    """
    if depth < MIN_DEPTH or depth > 10:
        raise VocabularyError(f'vocabulary depth must be {MIN_DEPTH} to 10, got {depth}')
    if not 2 <= k <= 20:
        raise VocabularyError(f'vocabulary branching must be 2 to 20, got {k}')
    descriptors = np.concatenate([np.asarray(d, np.uint8).reshape(-1, 32) for d in per_image])
    image_of = np.repeat(np.arange(len(per_image)), [len(d) for d in per_image])
    if len(descriptors) < 2:
        raise VocabularyError('too few ORB features to build a vocabulary '
                              f'({len(descriptors)} in {len(per_image)} images)')
    rng = np.random.default_rng(seed)
    tree = Vocabulary(k, depth)
    word_of = np.zeros(len(descriptors), np.int64)
    level: List[Tuple[int, np.ndarray]] = [(0, np.arange(len(descriptors)))]
    for current in range(1, depth + 1):
        following = []
        for parent, members in level:
            labels = k_majority(descriptors[members], k, rng)
            for group in range(labels.max() + 1):
                inside = members[labels == group]
                centre = (descriptors[inside[0]] if len(inside) == 1
                          else majority(descriptors[inside]))
                node = tree.add(parent, centre)
                if len(inside) == 1 or current == depth:
                    tree.leaf[node] = True
                    word_of[inside] = node
                else:
                    following.append((node, inside))
        if progress:
            progress(len(level))
        level = following
    # TF-IDF: idf = ln(images / images holding the word), as DBoW2's setNodeWeights.
    pairs = np.unique(np.stack([word_of, image_of]), axis=1)
    holders = np.bincount(pairs[0], minlength=len(tree.parents))
    for node in np.flatnonzero(holders):
        tree.weights[node] = float(np.log(len(per_image) / holders[node]))
    return tree


def cache_name(images: Sequence[PathLike], k: int, depth: int, features: int) -> str:
    """Return the cache file name of a vocabulary built from these images and settings."""
    digest = hashlib.sha1()
    for path in images:
        stat = os.stat(path)
        digest.update(f'{Path(path).name}:{stat.st_size}\n'.encode())
    return f'dbow2_orb_k{k}_L{depth}_f{features}_{digest.hexdigest()[:12]}.txt'


def vocabulary_cache_dir() -> Path:
    """Return the folder built vocabularies are cached in (``<cache>/vocabularies``)."""
    return cache_root() / 'vocabularies'


def write_vocabulary(tree: Vocabulary, path: PathLike) -> Path:
    """Write a vocabulary atomically in DBoW2's text format; return the path."""
    with atomic_output(path) as tmp:
        tmp.write_text(tree.text())
    return Path(path)


def vocabulary_for(images: Sequence[PathLike], given: Optional[PathLike] = None,
                   k: int = DEFAULT_BRANCHING, depth: int = DEFAULT_DEPTH,
                   features: int = DEFAULT_FEATURES,
                   progress: Optional[Callable[[str], None]] = None) -> Path:
    """Return the vocabulary to load: ``given``, else ``$PYORBSLAM3_VOCAB``, else one built.

    A built vocabulary is cached under :func:`vocabulary_cache_dir` by the images' names and
    sizes and the settings, so only the first use builds (about 20 s for 367 frames).

    Raises:
        VocabularyError: ``given`` (or the variable's file) is missing, or no images to build
            from.
    """
    for source, path in (('given', given), (VOCABULARY_ENV, os.environ.get(VOCABULARY_ENV))):
        if path:
            if not Path(path).is_file():
                raise VocabularyError(f'{path}: vocabulary file not found ({source})')
            return Path(path)
    if not images:
        raise VocabularyError('no vocabulary given and no frames to build one from')
    target = vocabulary_cache_dir() / cache_name(images, k, depth, features)
    if target.is_file():
        return target
    if progress:
        progress(f'building an ORB vocabulary from {len(images)} frames into {target}')
    tree = build_vocabulary(image_descriptors(images, features), k=k, depth=depth)
    return write_vocabulary(tree, target)
