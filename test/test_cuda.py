"""The CUDA paths on a CUDA GPU: graphed inference and the graphed training step.

Skipped where PyTorch sees no CUDA device (their fallbacks are tested on CPU tensors in
test_segmenter.py and test_training.py); `tools/gpu_session.sh` runs them first on a lent GPU.
"""

import numpy as np
import pytest
import torch

from semseg_ros.core.backends import TorchBackend
from semseg_ros.core.resources import shipped_weights
from semseg_ros.core.weights import load_weights
from semseg_ros.models import create_model
from semseg_ros.training.graph_step import GraphedStep, make_capturable
from semseg_ros.training.losses import SegmentationLoss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
MODEL = 'mininet_v2_cpu'


def _network():
    network = create_model(MODEL, 11)
    load_weights(network, shipped_weights(MODEL), MODEL, 11)
    return network.eval()


def _frames(count, height=256, width=512):
    generator = np.random.default_rng(0)
    # Smooth random images: closer to camera frames than noise, so labels are not all ties.
    small = generator.integers(0, 256, (count, height // 16, width // 16, 3), np.uint8)
    return [np.ascontiguousarray(np.kron(frame, np.ones((16, 16, 1), np.uint8)))[None]
            for frame in small]


@pytest.mark.parametrize('fp16, agreement', [(False, 0.995), (True, 0.99)])
def test_graphed_inference_agrees_with_the_cpu(fp16, agreement):
    """Replayed graphs give the CPU's labels, fresh arrays each call, for two input shapes."""
    cpu = TorchBackend(_network(), 'cpu')
    cuda = TorchBackend(_network(), 'cuda', fp16=fp16)
    assert cuda.providers == ['cuda graph' + (' fp16' if fp16 else '')]
    results = []
    for batch in _frames(3) + _frames(2, 360, 480):
        labels = cuda.run(batch)
        assert labels.dtype == np.uint8 and labels.shape == batch.shape[:3]
        assert np.mean(labels == cpu.run(batch)) >= agreement
        results.append(labels)
    assert not np.array_equal(results[0], results[1]), 'a later frame overwrote an earlier one'
    assert all(value is not None for value in cuda._captured.values()), 'capture failed'


def test_graphed_training_step_learns_like_the_eager_one():
    """The captured step trains (loss falls on a fixed batch) close to eager training."""
    def train(graphed: bool):
        torch.manual_seed(0)
        model = create_model(MODEL, 11).cuda().train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        if graphed:
            make_capturable(optimizer, torch.device('cuda'))
        criterion = SegmentationLoss(None, 11).cuda()
        losses = torch.zeros(20, device='cuda')
        index = torch.zeros((), dtype=torch.long, device='cuda')

        def step(images, labels):
            loss = criterion(model(images.float() / 255), labels)
            loss.backward()
            optimizer.step()
            losses.index_put_((index,), loss.detach())
            index.add_(1)

        def zero_grad():
            optimizer.zero_grad(set_to_none=True)
        runner = GraphedStep(step, zero_grad, notify=lambda text: None)
        generator = torch.Generator(device='cuda').manual_seed(1)
        images = torch.randint(0, 256, (4, 3, 96, 128), generator=generator, device='cuda',
                               dtype=torch.uint8)
        labels = (images[:, 0].long() * 11 // 256).clamp_max(10)
        for _ in range(20):
            if graphed:
                runner(images, labels)
            else:
                zero_grad()
                step(images, labels)
        assert runner.captured == graphed and runner.failed is None
        return losses.cpu()
    eager, graphed = train(False), train(True)
    assert graphed[-1] < 0.7 * graphed[0]
    assert abs(float(graphed[-1] - eager[-1])) < 0.1 * float(eager[0])
