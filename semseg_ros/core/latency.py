"""Latency statistics: the one summary (count, median, p95, ...) every report uses."""

from typing import Dict, Optional, Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile of a sequence (q in 0..100), NaN for an empty one."""
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float('nan')


def latency_summary(latencies_ms: Sequence[float]) -> Dict[str, Optional[float]]:
    """Return count, median, p95, mean, min and max of latencies in milliseconds.

    Every figure is None for an empty sequence (count 0). ``p90_ms`` is there too, for the
    model benchmark's table.
    """
    values = np.asarray(latencies_ms, np.float64)
    if values.size == 0:
        return {'count': 0, 'median_ms': None, 'p90_ms': None, 'p95_ms': None,
                'mean_ms': None, 'min_ms': None, 'max_ms': None}
    return {'count': int(values.size), 'median_ms': float(np.median(values)),
            'p90_ms': float(np.percentile(values, 90)),
            'p95_ms': float(np.percentile(values, 95)), 'mean_ms': float(values.mean()),
            'min_ms': float(values.min()), 'max_ms': float(values.max())}
