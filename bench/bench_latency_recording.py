"""What recording a latency costs on the send path.  A script, not a test.

    python bench/bench_latency_recording.py [--observations 200000]

Times one observation of neochat/latency.py's Histogram (what Session.write
and Database.run do per message and per query, with the time.monotonic()
call) against prometheus_client's Histogram.observe on the same buckets,
measured in the same run, and prints the ratio.
"""

import argparse
import os
import sys
import time
import timeit

from prometheus_client import CollectorRegistry
from prometheus_client import Histogram as PrometheusHistogram

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from neochat.latency import BUCKETS, Histogram  # noqa: E402


def per_observation(observe, count):
    arrived = time.monotonic()
    return min(timeit.repeat(lambda: observe(time.monotonic() - arrived), number=count, repeat=5)) / count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=200_000)
    count = parser.parse_args().observations
    ours = per_observation(Histogram().observe, count)
    reference = per_observation(
        PrometheusHistogram("bench_seconds", "", registry=CollectorRegistry(), buckets=BUCKETS).observe, count)
    print(f"neochat.latency.Histogram: {ours * 1e9:.0f} ns per observation")
    print(f"prometheus_client Histogram (reference): {reference * 1e9:.0f} ns per observation")
    print(f"ratio: {reference / ours:.1f}x cheaper")


if __name__ == "__main__":
    main()
