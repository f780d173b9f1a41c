"""Building an inference graph in a child process, which can be stopped at any moment.

Exporting a network to ONNX (and quantizing it) takes seconds to minutes and runs deep in
torch's exporter, where no exception may safely be raised from outside (see
:mod:`semseg_ros.core.stopping`). So :class:`~semseg_ros.core.backends.OnnxGraphCache` runs
the build here, in a fresh interpreter, and waits for it: a process asked to stop kills the
build and removes its folder, and nothing half-built is left behind. The exporter's memory
goes with the child too.

Run as ``python -m semseg_ros.export.graph_builder JOB_FOLDER``: the folder holds
``job.json`` (the arguments of
:func:`~semseg_ros.core.backends.export_inference_graph`) and ``network.pt`` (the pickled
network); the graph is written as ``graph.onnx`` there, and a failure as ``error.txt`` (one
line) with exit code 1.
"""

import json
import os
from pathlib import Path
import signal
import sys
import threading
import time
import traceback
from typing import List, Optional

JOB_FILE, NETWORK_FILE, GRAPH_FILE, ERROR_FILE = 'job.json', 'network.pt', 'graph.onnx', \
    'error.txt'
# Seconds between the checks that the parent still lives.
PARENT_CHECK_PERIOD_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """End this process when its parent has gone (a killed node leaves no build running)."""
    while True:
        time.sleep(PARENT_CHECK_PERIOD_S)
        if os.getppid() != parent:
            os._exit(1)


def error_line(error: BaseException) -> str:
    """Return an export error as the one line a GraphBuildError reports: type and message."""
    return f'{type(error).__name__}: {error}'.splitlines()[0] if str(error) \
        else type(error).__name__


def main(argv: Optional[List[str]] = None) -> int:
    """Build the graph the job folder describes; return the exit code."""
    # The node's Ctrl-C reaches its whole process group: end without a traceback.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    folder = Path((sys.argv[1:] if argv is None else argv)[0])
    threading.Thread(target=_exit_with_parent, args=(int(os.environ['SEMSEG_BUILD_PARENT']),),
                     daemon=True).start()
    import torch
    from semseg_ros.core.backends import export_inference_graph
    try:
        job = json.loads((folder / JOB_FILE).read_text())
        network = torch.load(folder / NETWORK_FILE, weights_only=False)
        export_inference_graph(network, folder / GRAPH_FILE, job['width'], job['height'],
                               job['with_confidence'], job['metadata'], job['precision'])
    except Exception as error:
        (folder / ERROR_FILE).write_text(error_line(error))
        traceback.print_exc()
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
