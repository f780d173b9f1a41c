"""The inference core: Segmenter on both backends, weights checks, ONNX cache, CLIs."""

import copy
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ros_testing import run_cli_here
from semseg_ros.core.backends import InferenceGraph, resolve_backend
from semseg_ros.core.classes import load_class_set
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.core.weights import save_weights, WeightsError
from semseg_ros.models import create_model

MODEL = 'mininet_v2_cpu'
SIZE = (128, 96)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def frame(samples):
    """One real CamVid frame (RGB, a shipped sample) and its labels."""
    image_rel, label_rel = (samples / 'val.txt').read_text().split('\n')[0].split()
    rgb = cv2.cvtColor(cv2.imread(str(samples / image_rel)), cv2.COLOR_BGR2RGB)
    return rgb, cv2.imread(str(samples / label_rel), cv2.IMREAD_GRAYSCALE)


@pytest.fixture
def weights_file(tmp_path, seeded_network):
    """A weights file of a seeded, untrained network (BN statistics made non-trivial)."""
    network = seeded_network(MODEL)
    return save_weights(tmp_path / 'w' / f'{MODEL}_test.pt', network, MODEL, 11, 'camvid')


def make(weights, backend='onnxruntime', **kwargs):
    """Build a Segmenter of the test model at the test size."""
    return Segmenter(SegmenterConfig(model=MODEL, weights=str(weights), backend=backend,
                                     input_width=SIZE[0], input_height=SIZE[1], threads=1,
                                     **kwargs))


def test_backends_agree_on_a_real_frame(frame, weights_file):
    """ONNX Runtime and PyTorch give the same class ids on a real CamVid frame."""
    rgb, _ = frame
    results = [make(weights_file, b).segment(rgb, with_confidence=True)
               for b in ('torch', 'onnxruntime')]
    for result in results:
        assert result.labels.shape == rgb.shape[:2] and result.labels.dtype == np.uint8
        assert result.labels.max() < 11
        assert result.confidence.shape == rgb.shape[:2]
        assert set(result.timings_ms) == {'preprocess', 'inference', 'postprocess'}
    agreement = np.mean(results[0].labels == results[1].labels)
    assert agreement > 0.999, f'backends agree on only {agreement:.4%} of pixels'
    assert np.abs(results[0].confidence.astype(int) - results[1].confidence).max() <= 1


def test_confidence_is_the_top_softmax_probability(weights_file):
    """The in-graph confidence equals 255 x max softmax computed the plain way."""
    network = make(weights_file, 'torch').network
    image = torch.randint(0, 256, (1, SIZE[1], SIZE[0], 3), dtype=torch.uint8)
    with torch.no_grad():
        labels, confidence = InferenceGraph(network, True)(image)
        logits = network(image.permute(0, 3, 1, 2).float() / 255.0)
    probabilities = torch.softmax(logits, 1)
    assert torch.equal(labels, probabilities.argmax(1).to(torch.uint8))
    expected = (probabilities.max(1).values * 255 + 0.5).to(torch.uint8)
    assert (confidence.int() - expected.int()).abs().max() <= 1


def test_output_resolutions(frame, weights_file):
    """'input' returns the camera size; 'network' the network's own output size."""
    rgb, _ = frame
    segmenter = make(weights_file, 'torch')
    assert segmenter.segment(rgb, 'input').labels.shape == rgb.shape[:2]
    stride = segmenter.network.output_stride
    network = segmenter.segment(rgb, 'network').labels
    assert network.shape == (SIZE[1] // stride, SIZE[0] // stride)
    with pytest.raises(ValueError, match='output_resolution'):
        segmenter.segment(rgb, 'full')
    with pytest.raises(ValueError, match='H x W x 3 uint8'):
        segmenter.segment(rgb[..., 0])


def test_weights_errors_say_what_was_expected(tmp_path, weights_file):
    """Missing file, another model's weights and a wrong class count are refused clearly."""
    with pytest.raises(WeightsError, match='not found'):
        make(tmp_path / 'missing.pt')
    other = save_weights(tmp_path / 'big.pt', create_model('mininet_v2'), 'mininet_v2', 11,
                         'camvid')
    with pytest.raises(WeightsError, match="model 'mininet_v2', expected 'mininet_v2_cpu'"):
        make(other)
    wrong = save_weights(tmp_path / 'c19.pt', create_model(MODEL, num_classes=19), MODEL, 19,
                         'cityscapes')
    with pytest.raises(WeightsError, match='19 classes, expected 11'):
        make(wrong)
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(WeightsError, match='not a weights file'):
        make(garbage)


def test_config_errors_list_valid_choices():
    """Unknown model/backend and impossible sizes name the valid values."""
    with pytest.raises(ValueError, match='valid models: .*mininet_v2_cpu'):
        Segmenter(SegmenterConfig(model='segnet', weights='none'))
    with pytest.raises(ValueError, match='valid backends: torch, onnxruntime'):
        Segmenter(SegmenterConfig(weights='none', backend='tensorflow'))
    with pytest.raises(ValueError, match='multiples of 8'):
        Segmenter(SegmenterConfig(weights='none', input_width=500, input_height=256))


@pytest.mark.parametrize('device, precision, installed, expected', [
    ('cpu', 'int8', ['torch', 'onnxruntime', 'openvino'], 'openvino'),
    ('cpu', 'int8', ['torch', 'onnxruntime'], 'onnxruntime'),
    ('cpu', 'fp32', ['torch', 'onnxruntime', 'openvino'], 'onnxruntime'),
    ('cuda', 'int8', ['torch', 'onnxruntime', 'openvino'], 'onnxruntime'),
    ('cuda', 'fp32', ['torch', 'onnxruntime', 'openvino'], 'onnxruntime')])
def test_auto_picks_the_runtime_measured_fastest_among_those_installed(device, precision,
                                                                       installed, expected):
    """auto: OpenVINO for int8 on a CPU when installed, else ONNX Runtime; a named backend is
    itself whatever is installed."""
    assert resolve_backend('auto', device, precision, installed) == expected
    assert resolve_backend('torch', device, 'fp32', installed) == 'torch'
    assert resolve_backend('openvino', device, precision, ['onnxruntime']) == 'openvino'


def test_onnx_graph_is_built_into_the_cache_and_refreshed(frame, weights_file, tmp_path):
    """The graph is built into the cache folder (the tests' shared one: other tests of the same
    weights share it), reused while the weights are unchanged, and built under another key
    after they change, into the graph_cache setting's folder when given; nothing is written
    beside the weights."""
    import re
    from semseg_ros.core.backends import graph_cache_dir
    rgb, _ = frame
    labels_only = re.compile(rf'{MODEL}_test\.{SIZE[0]}x{SIZE[1]}\.[0-9a-f]{{16}}\.onnx')

    def graphs(folder):
        return sorted(p for p in folder.glob('*.onnx') if labels_only.fullmatch(p.name))
    first = make(weights_file)
    first.segment(rgb)
    cached = first.backend._graphs.location(False)
    assert cached in graphs(graph_cache_dir())  # other keys' graphs may lie beside it
    stamp = cached.stat().st_mtime_ns
    make(weights_file).segment(rgb)
    assert cached.stat().st_mtime_ns == stamp, 're-exported although nothing changed'
    torch.manual_seed(1)
    save_weights(weights_file, create_model(MODEL), MODEL, 11, 'camvid')
    other = tmp_path / 'other_cache'
    make(weights_file, graph_cache=str(other)).segment(rgb)
    [rebuilt] = graphs(other)
    assert rebuilt.name != cached.name, 'the weights changed but the graph kept its key'
    assert not list(weights_file.parent.glob('*.onnx'))


def test_processes_starting_together_build_a_graph_once(seeded_network, tmp_path, caplog):
    """Two builders of one graph (a launch file's nodes, say): while another holds the graph's
    build lock they wait; then one builds and the other takes its graph."""
    import threading
    import time
    from semseg_ros.core.backends import graph_build_lock, OnnxGraphCache
    network = seeded_network(MODEL)
    caches = [OnnxGraphCache(copy.deepcopy(network), MODEL, None, 64, 64, cache=tmp_path)
              for _ in range(2)]
    paths = []

    def records(text):
        return [r for r in caplog.records if r.getMessage().startswith(text)]
    caplog.set_level(logging.INFO, logger='semseg_ros.core.backends')
    with graph_build_lock(caches[0].location(False)):
        threads = [threading.Thread(target=lambda c=c: paths.append(c.path(False)))
                   for c in caches]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(records('waiting for another process building')) < 2:
            assert time.monotonic() < deadline, 'the builders did not wait for the lock'
            time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=120)
    assert len(paths) == 2 and paths[0] == paths[1], paths
    assert len(records('building the fp32 graph')) == 1, caplog.text
    import onnxruntime
    session = onnxruntime.InferenceSession(str(paths[0]), providers=['CPUExecutionProvider'])
    [labels] = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 64, 64, 3),
                                                                         np.uint8)})
    assert labels.dtype == np.uint8 and labels.shape[0] == 1


def test_a_stop_request_ends_the_wait_for_anothers_build(seeded_network, tmp_path):
    """A node asked to stop while another process builds its graph stops waiting."""
    import threading
    from semseg_ros.core import stopping
    from semseg_ros.core.backends import graph_build_lock, OnnxGraphCache
    cache = OnnxGraphCache(seeded_network(MODEL), MODEL, None, 64, 64, cache=tmp_path)
    outcome = []

    def wait():
        try:
            cache.path(False)
        except stopping.StopRequested:
            outcome.append('stopped')
    with graph_build_lock(cache.location(False)):
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        stopping.request_stop()
        try:
            waiter.join(timeout=30)
        finally:
            stopping.clear_stop_request()
    assert outcome == ['stopped']
    assert not cache.location(False).exists()


def test_graphs_of_other_code_are_rebuilt_not_taken(seeded_network, tmp_path, monkeypatch):
    """A cached graph outlives its code (an upgrade, an edit): the graph's recipe digest (the
    networks, exporter, INT8 code and InferenceGraph) is in its metadata and key; other files
    of the package are not."""
    import shutil
    from semseg_ros.core import backends
    package = tmp_path / 'semseg_ros'
    shutil.copytree(REPO / 'semseg_ros', package, ignore=shutil.ignore_patterns(
        '__pycache__', '*.pt', '*.onnx', 'samples'))
    before = backends.recipe_digest(package)
    with open(package / 'nodes' / 'segmentation_node.py', 'a') as node:
        node.write('# not part of any graph\n')
    assert backends.recipe_digest(package) == before
    with open(package / 'models' / 'enet.py', 'a') as model:
        model.write('# a network edited\n')
    edited = backends.recipe_digest(package)
    assert edited != before
    network = seeded_network(MODEL)
    old = backends.OnnxGraphCache(network, MODEL, None, 64, 64, cache=tmp_path)
    installed = backends.recipe_digest(REPO / 'semseg_ros')
    assert old.metadata['semseg_ros.graph_recipe'] == backends.graph_recipe_digest() == installed
    monkeypatch.setattr(backends, 'graph_recipe_digest', lambda: edited)
    new = backends.OnnxGraphCache(network, MODEL, None, 64, 64, cache=tmp_path)
    assert new.metadata['semseg_ros.graph_recipe'] == edited
    assert new.location(False) != old.location(False)


def test_the_same_weights_saved_twice_share_one_graph(seeded_network, tmp_path):
    """Weights files are byte-for-byte reproducible, so their graphs are keyed alike."""
    from semseg_ros.core.weights import file_digest
    network = seeded_network(MODEL)
    first, second = (save_weights(tmp_path / folder / f'{MODEL}.pt', network, MODEL, 11,
                                  'camvid') for folder in ('a', 'b'))
    assert first.read_bytes() == second.read_bytes()
    assert file_digest(first) == file_digest(second)


def test_an_untrained_network_is_the_same_in_every_process():
    """weights none: a seeded network, the same in every process (so its graphs are keyed
    alike and built once), drawn without touching the process's random state."""
    import subprocess
    import sys
    from semseg_ros.core.weights import state_digest
    script = ('from semseg_ros.core.segmenter import Segmenter, SegmenterConfig\n'
              'from semseg_ros.core.weights import state_digest\n'
              f'print(state_digest(Segmenter(SegmenterConfig(model={MODEL!r}, weights="none", '
              'backend="torch")).network))')
    state = torch.random.get_rng_state()
    network = Segmenter(SegmenterConfig(model=MODEL, weights='none', backend='torch')).network
    assert torch.equal(torch.random.get_rng_state(), state)
    other = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                           timeout=120)
    assert other.returncode == 0, other.stderr
    assert other.stdout.split() == [state_digest(network)]


def test_cuda_missing_falls_back_to_cpu(weights_file, caplog):
    """Asking for CUDA on a machine without it warns and runs on the CPU."""
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    with caplog.at_level(logging.WARNING):
        segmenter = make(weights_file, 'torch', device='cuda')
    assert segmenter.device == 'cpu'
    assert 'CUDA is not available' in caplog.text
    assert segmenter.segment(np.zeros((40, 50, 3), np.uint8)).labels.shape == (40, 50)


def test_class_set_palette_and_overlay():
    """Class sets load from YAML; colours are a table lookup; unknown sets list the shipped."""
    from semseg_ros.core.classes import colorize, overlay
    camvid = load_class_set('camvid')
    assert camvid.num_classes == 11 and camvid.ignore_index == 11
    assert camvid.names[8] == 'Car' and load_class_set('cityscapes').num_classes == 19
    labels = np.array([[0, 1], [11, 255]], np.uint8)
    colors = colorize(labels, camvid)
    assert colors[0, 1].tolist() == camvid.colors[1].tolist()
    assert colors[1, 0].tolist() == [0, 0, 0] and colors[1, 1].tolist() == [0, 0, 0]
    image = np.full((2, 2, 3), 200, np.uint8)
    blended = overlay(image, colors, 0.25)
    expected = np.round(0.75 * 200 + 0.25 * colors.astype(float)).astype(np.uint8)
    assert np.abs(blended.astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match='shipped class sets: camvid, cityscapes'):
        load_class_set('kitti')


def test_segment_cli_writes_pngs_and_names_bad_files(frame, samples, weights_file, tmp_path,
                                                     capsys):
    """``semseg segment`` writes label/colour/overlay PNGs and names an unreadable file."""
    image_rel = (samples / 'val.txt').read_text().split()[0]
    result = run_cli_here(capsys, 'segment', samples / image_rel, '--weights', weights_file,
                          '--size', f'{SIZE[0]}x{SIZE[1]}', '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    stem = Path(image_rel).stem
    labels = cv2.imread(str(tmp_path / 'out' / f'{stem}_labels.png'), cv2.IMREAD_UNCHANGED)
    assert labels.shape == frame[0].shape[:2] and labels.max() < 11
    assert (tmp_path / 'out' / f'{stem}_overlay.png').is_file()
    bad = run_cli_here(capsys, 'segment', tmp_path / 'nope.png', '--weights', weights_file,
                       '--size', f'{SIZE[0]}x{SIZE[1]}', '--out', tmp_path / 'out')
    assert bad.returncode == 2 and 'nope.png' in bad.stderr


def test_bench_cli_reports_every_figure(tmp_path, capsys):
    """``semseg bench`` measures a model's variants in child processes, interleaved with its
    eager PyTorch path, and writes every figure."""
    out = tmp_path / 'bench.json'
    result = run_cli_here(capsys, 'bench', '--model', MODEL, '--size', '64x64', '--runs', '3',
                          '--warmup', '1', '--threads', '1', '--weights', 'none', '--json', out)
    assert result.returncode == 0, result.stderr
    assert f'| {MODEL} | onnxruntime | fp32 | 64x64 |' in result.stdout
    # The eager PyTorch path is timed first, in the same rounds, as the speed-up's reference.
    eager, row = json.loads(out.read_text())['rows']
    assert (eager['backend'], eager['speedup_over_eager']) == ('torch', 1.0)
    assert row['params'] > 100_000 and row['gmacs'] > 0
    assert 0 < row['latency_ms_median'] <= row['latency_ms_p90'] + 1e-9 and row['fps'] > 0
    assert row['runs'] == eager['runs'] == 3 and row['rounds'] == 1
    assert 0 < row['speedup_p10'] <= row['speedup_over_eager'] <= row['speedup_p90']
    assert f"| {row['speedup_over_eager']:.2f}x |" in result.stdout
    alone = run_cli_here(capsys, 'bench', '--model', MODEL, '--size', '64x64', '--runs', '7',
                         '--warmup', '0', '--threads', '1', '--weights', 'none', '--no-eager',
                         '--json', out)
    assert alone.returncode == 0, alone.stderr
    [row] = json.loads(out.read_text())['rows']
    assert row['backend'] == 'onnxruntime' and 'speedup_over_eager' not in row
    assert (row['runs'], row['rounds']) == (10, 2)  # whole rounds of 5
    bad = run_cli_here(capsys, 'bench', '--model', 'segnet')
    assert bad.returncode == 2 and 'valid' in bad.stderr


def test_bench_goes_on_past_a_failing_variant():
    """A variant that cannot be built is reported with its reason; the others are timed."""
    from semseg_ros.core.bench import measure_interleaved, Variant
    good = Variant(MODEL, 'torch', size=(64, 64))
    failures = []
    rows = measure_interleaved([good, Variant(MODEL, 'tensorflow', size=(64, 64))], runs=2,
                               warmup=0, threads=1, weights='none',
                               on_failure=lambda variant, reason: failures.append(
                                   (variant.backend, reason)))
    assert [(row['backend'], row['runs'], row['speedup_over_eager']) for row in rows] == [
        ('torch', 2, 1.0)]
    [(backend, reason)] = failures
    assert backend == 'tensorflow' and 'tensorflow' in reason


def test_export_cli_writes_checked_graphs(weights_file, tmp_path, capsys):
    """``semseg export`` writes deploy and logits graphs that ONNX Runtime runs as PyTorch."""
    import onnxruntime as ort
    deploy = tmp_path / 'deploy.onnx'
    result = run_cli_here(capsys, 'export', '--model', MODEL, '--weights', weights_file,
                          '--size', f'{SIZE[0]}x{SIZE[1]}', '--confidence', '--out', deploy)
    assert result.returncode == 0, result.stderr
    assert 'agree with PyTorch on 100' in result.stdout
    session = ort.InferenceSession(str(deploy), providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == ['labels', 'confidence']
    assert session.get_inputs()[0].type == 'tensor(uint8)'
    # The node can run the exported deploy graph as it is.
    given = make(weights_file, onnx_path=str(deploy))
    assert given.segment(np.zeros((96, 128, 3), np.uint8), with_confidence=True).confidence \
        is not None
    logits = tmp_path / 'logits.onnx'
    result = run_cli_here(capsys, 'export', '--model', MODEL, '--weights', weights_file,
                          '--size', f'{SIZE[0]}x{SIZE[1]}', '--graph', 'logits', '--out', logits)
    assert result.returncode == 0, result.stderr
    with pytest.raises(ValueError, match='not a deployment graph'):
        make(weights_file, onnx_path=str(logits))
    bad = run_cli_here(capsys, 'export', '--model', MODEL, '--weights', 'none', '--size',
                       '100x100', '--out', tmp_path / 'bad.onnx')
    assert bad.returncode == 2 and 'multiples of 8' in bad.stderr
    assert not (tmp_path / 'bad.onnx').exists()


def test_onnxruntime_segmenter_leaves_the_process_thread_count(weights_file):
    """A Segmenter on ONNX Runtime sets its threads per session, not PyTorch's for everyone."""
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before != 2 else 3)
    try:
        expected = torch.get_num_threads()
        make(weights_file)  # threads=1
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_half_precision_graph_agrees_with_float(seeded_network):
    """The CUDA path's half-precision graph (weights and activations in fp16, channels-last)
    labels like the float graph; checked here on CPU tensors."""
    network = seeded_network(MODEL)
    image = torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (2, 64, 128, 3), dtype=np.uint8))
    with torch.inference_mode():
        full = InferenceGraph(network, True)(image)
        half_network = copy.deepcopy(network).to(torch.float16,
                                                 memory_format=torch.channels_last)
        half = InferenceGraph(half_network, True, torch.float16)(image)
    assert half[0].dtype == torch.uint8 and half[0].shape == full[0].shape
    assert (half[0] == full[0]).float().mean() > 0.99
    assert (half[1].int() - full[1].int()).abs().float().mean() < 2


def test_bench_cuda_request_falls_back_and_says_so(tmp_path, capsys):
    """``semseg bench --device cuda --fp16`` on a machine without CUDA runs on the CPU in
    float and the table says what ran."""
    out = tmp_path / 'bench.json'
    result = run_cli_here(capsys, 'bench', '--model', MODEL, '--backend', 'torch', '--device',
                          'cuda', '--fp16', '--size', '64x64', '--runs', '2', '--warmup', '1',
                          '--weights', 'none', '--no-eager', '--json', out)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(out.read_text())['rows']
    if not torch.cuda.is_available():
        assert row['providers'] == ['cpu'] and row['precision'] == 'fp32'
        assert row['device'] == 'cuda'
        assert '| cpu |' in result.stdout
    else:
        assert row['providers'] == ['cuda graph fp16'] and row['precision'] == 'fp16'
