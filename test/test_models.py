"""Every registered network: shapes, input checks, gradients, paper complexity, ONNX export.

The tests loop over ``list_models()``, so a new model file is covered by adding its import
line to ``semseg_ros/models/__init__.py``.
"""

import pytest
import torch
from torch import nn

from semseg_ros.export.onnx_export import compare_with_torch, export_onnx
from semseg_ros.models import check_input_size, create_model, list_models, model_info
from semseg_ros.models.complexity import count_gmacs, count_parameters
from semseg_ros.models.layers import channel_shuffle, ConcatDownsample

MODELS = list_models()
# The papers' complexity figures are for Cityscapes.
PAPER_CLASSES = 19


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep to two threads and a fixed seed: the test machine is small and shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_all_networks_registered():
    """The four networks of the package are in the registry."""
    assert {'mininet_v2', 'mininet_v2_cpu', 'enet', 'rds_net'} <= set(MODELS)


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('width,height', [(480, 360), (512, 256), (64, 64)])
def test_output_shape(name, width, height):
    """Logits are N x classes x (H, W) / output_stride."""
    info = model_info(name)
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, height, width))
    stride = info.output_stride
    assert logits.shape == (2, 7, height // stride, width // stride)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('name', MODELS)
def test_bad_input_size_names_the_multiple(name):
    """A size that is not a multiple of input_multiple is refused, naming the multiple."""
    multiple = model_info(name).input_multiple
    model = create_model(name).eval()
    size = multiple * 8 + multiple // 2
    with pytest.raises(ValueError, match=f'{name}.*multiples of {multiple}'):
        model(torch.rand(1, 3, size, multiple * 8))
    with pytest.raises(ValueError, match=f'multiples of {multiple}'):
        check_input_size(name, multiple * 8, size)
    with pytest.raises(ValueError, match='N x 3 x H x W'):
        model(torch.rand(1, 1, multiple * 8, multiple * 8))
    check_input_size(name, multiple * 8, multiple * 4)


@pytest.mark.parametrize('name', MODELS)
def test_every_parameter_gets_a_gradient(name):
    """One training step reaches every parameter with a finite, non-zero gradient."""
    model = create_model(name, num_classes=5).train()
    logits = model(torch.rand(2, 3, 64, 64))
    target = torch.randint(0, 5, (2,) + logits.shape[-2:])
    nn.functional.cross_entropy(logits, target).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f'{parameter_name} got no gradient'
        assert torch.isfinite(parameter.grad).all(), f'{parameter_name}: non-finite gradient'
        assert parameter.grad.abs().sum() > 0, f'{parameter_name}: zero gradient'


@pytest.mark.parametrize('name', [n for n in MODELS if model_info(n).paper_params])
def test_parameter_count_matches_paper(name):
    """Parameter count within 5% of the paper's figure."""
    expected = model_info(name).paper_params
    count = count_parameters(create_model(name, num_classes=PAPER_CLASSES))
    assert abs(count - expected) <= 0.05 * expected, f'{name}: {count} vs paper {expected}'


@pytest.mark.parametrize('name,size,expected', [
    (n, size, gmacs) for n in MODELS for size, gmacs in model_info(n).paper_gmacs.items()])
def test_gmacs_match_paper(name, size, expected):
    """GMACs at the paper's input size within 10% of the paper's figure."""
    gmacs = count_gmacs(create_model(name, num_classes=PAPER_CLASSES), *size)
    assert abs(gmacs - expected) <= 0.10 * expected, f'{name} at {size}: {gmacs} vs {expected}'


@pytest.mark.parametrize('name', MODELS)
def test_onnx_export_matches_torch(name, tmp_path):
    """The eval-mode ONNX graph gives PyTorch's logits in ONNX Runtime."""
    onnxruntime = pytest.importorskip('onnxruntime')
    model = create_model(name).train()
    with torch.no_grad():  # Non-trivial batch-norm statistics, so a wrong fold would show.
        model(torch.rand(4, 3, 64, 96))
    path = export_onnx(model, tmp_path / f'{name}.onnx', 96, 64)
    assert model.training, 'export_onnx changed the mode of the model it was given'
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert compare_with_torch(model, path, 96, 64) < 1e-4
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['image']
    assert [o.name for o in session.get_outputs()] == ['logits']
    stride = model_info(name).output_stride
    image = torch.rand(1, 3, 64, 96).numpy()
    assert session.run(['logits'], {'image': image})[0].shape == (1, 11, 64 // stride,
                                                                  96 // stride)


def test_export_refuses_bad_size(tmp_path):
    """export_onnx names the valid multiple and writes nothing for a bad size."""
    with pytest.raises(ValueError, match='multiples of 8'):
        export_onnx(create_model('rds_net'), tmp_path / 'x.onnx', 100, 64)
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_lists_valid_names():
    """An unknown name is refused with the list of valid ones."""
    with pytest.raises(ValueError) as error:
        create_model('segnet')
    for name in MODELS:
        assert name in str(error.value)


class _HandCountable(nn.Module):
    """Dense, depthwise and transposed convolutions with MACs countable by hand."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 8, 1, groups=4)
        self.transposed = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x):
        return self.transposed(self.grouped(self.depthwise(self.dense(x))))


def test_complexity_hand_count():
    """Grouped, depthwise and transposed convs are counted at their true cost."""
    model = _HandCountable()
    pixels = 16 * 8
    macs = (3 * 8 * 9 * pixels  # dense 3x3
            + 8 * 9 * pixels  # depthwise 3x3: one input channel per output
            + 8 * 2 * pixels  # 1x1 in 4 groups: 2 input channels per output
            + 8 * 4 * 2 * 2 * pixels)  # transposed 2x2: every input pixel hits 4 outputs
    assert count_gmacs(model, 16, 8) == pytest.approx(macs / 1e9, rel=1e-9)
    params = (3 * 8 * 9 + 8) + (8 * 9 + 8) + (8 * 2 + 8) + (8 * 4 * 4 + 4)
    assert count_parameters(model) == params
    assert model.training, 'count_gmacs changed the mode of the model'


def test_channel_shuffle_interleaves_groups():
    """Channel shuffle with g groups takes one channel from each group in turn."""
    x = torch.arange(8.0).reshape(1, 8, 1, 1).expand(2, 8, 3, 5)
    shuffled = channel_shuffle(x, 4)
    assert shuffled[0, :, 0, 0].tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert shuffled.shape == x.shape


def test_concat_downsample_equals_one_batch_norm_after_concat():
    """The per-branch batch norms of ConcatDownsample are one BN over the concatenation."""
    block = ConcatDownsample(3, 16).train()
    with torch.no_grad():
        block(torch.rand(4, 3, 32, 32))  # Non-trivial running statistics.
    block.eval()
    conv, conv_bn = block.conv
    joint = nn.BatchNorm2d(16).eval()
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        halves = [getattr(conv_bn, name), getattr(block.pool_bn, name)]
        getattr(joint, name).data = torch.cat(halves)
    image = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        branches = torch.cat([conv(image), nn.functional.max_pool2d(image, 2)], 1)
        expected = torch.relu(joint(branches))
        assert torch.allclose(block(image), expected, atol=1e-6)
