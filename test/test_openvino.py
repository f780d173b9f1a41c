"""The OpenVINO backend: same labels as ONNX Runtime on real frames, what auto picks, refusals."""

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ros_testing import run_cli_here
from semseg_ros.core.resources import samples_dir
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.data.datasets import read_image

pytest.importorskip('openvino', reason='openvino is an optional runtime (requirements.txt '
                    'installs it; package.xml leaves it out)')

MODEL = 'mininet_v2_cpu'
SIZE = (256, 128)


@pytest.fixture(scope='module')
def frames():
    """The 48 shipped CamVid val frames of sequence 0016E5 (RGB)."""
    files = sorted((samples_dir() / 'camvid_0016E5' / 'images').glob('*.jpg'))
    assert len(files) == 48
    return [read_image(path) for path in files]


def make(backend, precision, **kwargs):
    """A Segmenter of the shipped MiniNet-v2-cpu weights at the test size (its graphs are
    built once, into the test run's graph cache)."""
    return Segmenter(SegmenterConfig(model=MODEL, backend=backend, precision=precision,
                                     input_width=SIZE[0], input_height=SIZE[1], **kwargs))


def agreement(first, second, frames):
    """Per frame, the share of pixels whose labels (at the frame size) the two agree on."""
    return np.array([np.mean(first.segment(f).labels == second.segment(f).labels)
                     for f in frames])


def test_fp32_labels_and_confidence_match_onnxruntime_on_the_samples(frames):
    """f32 inference precision: the same labels as ONNX Runtime's fp32 on every sample frame.

    Measured at 512x256: identical labels and confidence on all 48 frames. The bf16 precision
    OpenVINO picks by default on AMX CPUs differs on about 0.1 % of the pixels, so a stray
    default shows here.
    """
    onnxruntime, openvino = (make(b, 'fp32') for b in ('onnxruntime', 'openvino'))
    assert openvino.device == 'cpu' and openvino.describe()['providers'][0].startswith(
        'openvino')
    same = agreement(onnxruntime, openvino, frames)
    assert same.min() >= 0.9995, same.min()
    first, second = (s.segment(frames[0], with_confidence=True)
                     for s in (onnxruntime, openvino))
    assert first.confidence.shape == second.confidence.shape == frames[0].shape[:2]
    assert np.mean(np.abs(first.confidence.astype(int) - second.confidence) <= 1) >= 0.999


def test_int8_graph_runs_on_openvino_int8_kernels_close_to_onnxruntime(frames):
    """The package's QDQ int8 graph: OpenVINO's labels agree with ONNX Runtime's int8 ones.

    Measured at 512x256 with the shipped weights: 99.65 % of the pixels (worst frame 99.52 %),
    and the same mIoU on CamVid val (docs/cpu_inference.md); both round differently, so not
    100 %. A wrong scale or layout would fall far below.
    """
    onnxruntime, openvino = (make(b, 'int8') for b in ('onnxruntime', 'openvino'))
    same = agreement(onnxruntime, openvino, frames)
    assert same.mean() >= 0.98 and same.min() >= 0.97, (same.mean(), same.min())
    assert openvino.backend._graphs.path(False) == onnxruntime.backend._graphs.path(False)


# An untrained ENet's int8 graph (built once, into the test run's graph cache).
ENET_INT8 = {'model': 'enet', 'weights': 'none', 'precision': 'int8', 'input_width': 64,
             'input_height': 64}
# An untrained MiniNet-v2-cpu at the size of the bench and signal-stack tests (their graphs
# are built once, into the test run's graph cache).
UNTRAINED = {'model': MODEL, 'weights': 'none', 'input_width': 128, 'input_height': 64}


def test_a_graph_openvino_cannot_read_is_refused_naming_the_operator():
    """ENet's max-unpooling has no OpenVINO ONNX conversion: a ValueError says so."""
    with pytest.raises(ValueError, match='MaxUnpool.*use backend onnxruntime'):
        Segmenter(SegmenterConfig(backend='openvino', **ENET_INT8))


def test_missing_openvino_names_the_package_and_auto_runs_onnxruntime(monkeypatch):
    """Without the package, the backend says how to install it (or what to use instead);
    auto runs the int8 graph on ONNX Runtime."""
    monkeypatch.setitem(sys.modules, 'openvino', None)  # makes `import openvino` fail
    config = {**UNTRAINED, 'precision': 'int8'}
    with pytest.raises(ImportError, match='pip install openvino'):
        Segmenter(SegmenterConfig(backend='openvino', **config))
    assert Segmenter(SegmenterConfig(backend='auto', **config)).describe()['backend'] == \
        'onnxruntime'


def test_auto_runs_int8_on_openvino_and_fp32_on_onnxruntime(frames):
    """The CPU robot's setting (auto, int8) runs OpenVINO, the very labels of backend
    openvino; fp32 stays on ONNX Runtime."""
    auto, openvino = (make(b, 'int8') for b in ('auto', 'openvino'))
    assert auto.describe()['backend'] == 'openvino' and auto.describe()['precision'] == 'int8'
    assert all(share == 1.0 for share in agreement(auto, openvino, frames[::8]))
    assert make('auto', 'fp32').describe()['backend'] == 'onnxruntime'


def test_auto_runs_a_graph_openvino_cannot_read_on_onnxruntime(caplog):
    """ENet's max-unpooling is outside OpenVINO's ONNX frontend: auto falls back, with the
    reason in the log, where backend openvino refuses."""
    config = SegmenterConfig(backend='auto', **ENET_INT8)
    with caplog.at_level(logging.INFO, logger='semseg_ros'):
        segmenter = Segmenter(config)
    assert segmenter.describe()['backend'] == 'onnxruntime'
    assert 'MaxUnpool' in caplog.text and 'backend auto runs it on onnxruntime' in caplog.text
    labels = segmenter.segment(np.zeros((48, 64, 3), np.uint8)).labels
    assert labels.shape == (48, 64) and labels.dtype == np.uint8


def test_bench_cli_measures_the_openvino_backend(capsys):
    """``semseg bench --backend openvino`` measures fp32 and int8 and says what ran."""
    result = run_cli_here(capsys, 'bench', '--model', MODEL, '--backend', 'openvino',
                          '--precision', 'all', '--weights', 'none', '--size', '128x64',
                          '--runs', '2', '--warmup', '1')
    assert result.returncode == 0, result.stderr
    rows = [line.split(' | ') for line in result.stdout.splitlines()
            if line.startswith(f'| {MODEL} |')]
    # The eager PyTorch reference first, then both OpenVINO precisions with their speed-ups.
    assert [row[1:3] for row in rows] == [['torch', 'fp32'], ['openvino', 'fp32'],
                                          ['openvino', 'int8']]
    assert all('openvino' in row[-1] and row[-3].endswith('x') for row in rows[1:])
    assert 'openvino' in result.stdout.splitlines()[0]  # the machine line names its version


def test_openvino_leaves_the_threads_signal_stack_as_it_was():
    """OpenVINO's CPU plugin installs an alternate signal stack on the thread that loads it
    and can unmap it later; the backend gives the thread its own back, so a Ctrl-C after
    OpenVINO ran reaches Python's handler (which runs on that stack) instead of killing the
    process with SIGSEGV. In a fresh process: the plugin loads only once per process."""
    script = textwrap.dedent(f"""
        import ctypes, os, signal
        import numpy as np
        from semseg_ros.core.segmenter import Segmenter, SegmenterConfig

        class Stack(ctypes.Structure):
            _fields_ = [('sp', ctypes.c_void_p), ('flags', ctypes.c_int),
                        ('size', ctypes.c_size_t)]

        def current():
            stack = Stack()
            assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) == 0
            return stack.sp, stack.size

        before = current()
        segmenter = Segmenter(SegmenterConfig(backend='openvino', **{UNTRAINED!r}))
        segmenter.segment(np.zeros((64, 128, 3), np.uint8))
        after = current()
        del segmenter
        signal.signal(signal.SIGINT, lambda *_: print('handled', flush=True))
        os.kill(os.getpid(), signal.SIGINT)
        print(before[0] is not None, before == after, flush=True)
    """)
    done = subprocess.run([sys.executable, '-X', 'faulthandler', '-c', script],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ['handled', 'True', 'True']
