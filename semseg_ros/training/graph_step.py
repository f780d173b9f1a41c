"""A training step captured once as a CUDA graph and replayed (``semseg train --cuda-graph``).

The small networks' steps are bound by kernel launches and Python, not by the GPU: a
MiniNet-v2-cpu step of 8 480x360 crops is a few hundred kernels of microseconds each. Replaying
the whole step (forward, loss, backward, Adam, the weights' moving average and the loss
bookkeeping) as one CUDA graph removes that overhead, as PyTorch's "whole network capture"
recipe describes (https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).

What capture needs, and how it is met:

* static inputs: each batch is copied into buffers the graph reads;
* no host synchronisation inside the step: the loss keeps its sums on the device;
* a capturable optimizer: Adam with ``capturable=True``, its step counters on the device and
  its learning rate a device tensor that the scheduler fills in place;
* warm-up before capture: a few eager steps on a side stream create the optimizer state and
  let cuDNN choose its algorithms.

A batch of another shape (a short last batch) runs eagerly with the same tensors. Should
capture fail, training goes on eagerly after one warning.
"""

from typing import Any, Callable, Dict, Optional

import torch

# Eager steps before capture: the first creates the optimizer state, the next let cuDNN's
# benchmark mode settle on its algorithms.
WARMUP_STEPS = 3


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Turn an Adam-style optimizer capturable on ``device``, in place.

    Its learning rates become device tensors (the scheduler fills them in place) and its
    step counters move to the device, so a step does no host work.
    """
    for group in optimizer.param_groups:
        group['capturable'] = True
        if not isinstance(group['lr'], torch.Tensor):
            group['lr'] = torch.tensor(float(group['lr']), dtype=torch.float32, device=device)
    for state in optimizer.state.values():
        if 'step' in state:
            state['step'] = state['step'].to(device=device, dtype=torch.float32)


def portable_state_dict(optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """Return the optimizer's state dict as a plain (non-capturable) optimizer writes it.

    A checkpoint then resumes the same way with or without ``--cuda-graph``, on any device.
    """
    state = optimizer.state_dict()
    for group in state['param_groups']:
        if isinstance(group.get('lr'), torch.Tensor):
            group['lr'] = float(group['lr'])
        if 'capturable' in group:
            group['capturable'] = False
    return state


class GraphedStep:
    """Runs a training step eagerly a few times, then captures it and replays the graph.

    Attributes:
        captured: Whether a graph is being replayed.
        failed: Why capture failed (None: it did not).
    """

    def __init__(self, step: Callable[[torch.Tensor, torch.Tensor], None],
                 zero_grad: Callable[[], None], notify: Callable[[str], None],
                 warmup_steps: int = WARMUP_STEPS):
        """Wrap ``step(images, labels)``, which must not synchronise with the host.

        Args:
            step: Forward, loss, backward and optimizer update of one batch, accumulating
                any statistics into tensors that outlive it; it leaves gradients in place.
            zero_grad: Drops the gradients (``set_to_none``) before an eager step.
            notify: Receives one line when the step is captured, or why it could not be.
            warmup_steps: Eager steps before capture.
        """
        self.step = step
        self.zero_grad = zero_grad
        self.notify = notify
        self.warmup_steps = int(warmup_steps)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.images: Optional[torch.Tensor] = None
        self.labels: Optional[torch.Tensor] = None
        self.warm = 0
        self.failed: Optional[str] = None

    @property
    def captured(self) -> bool:
        """Whether a graph is being replayed."""
        return self.graph is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Train on one batch."""
        if self.graph is not None and images.shape == self.images.shape \
                and labels.shape == self.labels.shape:
            self.images.copy_(images)
            self.labels.copy_(labels)
            self.graph.replay()
            return
        if self.graph is not None or self.failed is not None \
                or images.device.type != 'cuda':
            self._eager(images, labels)
            return
        if self.warm < self.warmup_steps:
            stream = torch.cuda.Stream(device=images.device)
            stream.wait_stream(torch.cuda.current_stream(images.device))
            with torch.cuda.stream(stream):
                self._eager(images, labels)
            torch.cuda.current_stream(images.device).wait_stream(stream)
            self.warm += 1
            return
        self._capture(images, labels)

    def _eager(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.zero_grad()
        self.step(images, labels)

    def _capture(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images.clone(), labels.clone()
        graph = torch.cuda.CUDAGraph()
        # Gradients allocated during capture live in the graph's memory pool: every replay
        # writes them afresh, so none is zeroed between replays.
        self.zero_grad()
        try:
            with torch.cuda.graph(graph):
                self.step(self.images, self.labels)
        except RuntimeError as error:
            # Capture records kernels without running them: nothing was trained yet.
            self.failed = str(error).splitlines()[0] if str(error) else type(error).__name__
            self.images = self.labels = None
            self.notify(f'warning: could not capture the training step as a CUDA graph '
                        f'({self.failed}); training on eagerly')
            torch.cuda.synchronize(images.device)
            self._eager(images, labels)
            return
        self.graph = graph
        self.notify(f'training step captured as a CUDA graph for batches of '
                    f'{tuple(images.shape)}')
        # The captured batch has not been trained on yet.
        graph.replay()
