"""Latency histograms cheap enough for the send path: one bisect and two
additions per observation, no lock and no allocation (each histogram is
observed on the reactor thread only).  The metrics endpoint
(neochat/services/metrics.py) reads them as Prometheus histograms; the
chat domain and the store keep them whether or not anyone scrapes."""

import bisect

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """Observations in seconds, counted per bucket (upper bounds ``BUCKETS``)."""

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: over the largest bound
        self.sum = 0.0

    def observe(self, seconds):
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self):
        """[(upper bound, observations up to it)], ending with "+Inf"."""
        total, rows = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts):
            total += count
            rows.append((bound, total))
        return rows
