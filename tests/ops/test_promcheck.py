#!/usr/bin/env python3
"""The strict Prometheus checker itself: it accepts a correct exposition
and rejects each kind of mistake it is meant to catch, so a passing
/metrics check means something."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promcheck  # noqa: E402
from opslib import main  # noqa: E402

GOOD = """# HELP chanq_up Whether it is up.
# TYPE chanq_up gauge
chanq_up 1
# HELP chanq_queue_acked_total Jobs acked.
# TYPE chanq_queue_acked_total counter
chanq_queue_acked_total{queue="mail"} 3
chanq_queue_acked_total{queue="we\\"ird\\\\q\\nx"} 0
# HELP chanq_lat_seconds Latency.
# TYPE chanq_lat_seconds histogram
chanq_lat_seconds_bucket{le="0.001"} 1
chanq_lat_seconds_bucket{le="0.01"} 4
chanq_lat_seconds_bucket{le="+Inf"} 5
chanq_lat_seconds_sum 0.5
chanq_lat_seconds_count 5
# HELP chanq_empty A family with no samples yet.
# TYPE chanq_empty gauge
# HELP chanq_weird_values Values Go parses.
# TYPE chanq_weird_values gauge
chanq_weird_values{k="a"} NaN
chanq_weird_values{k="b"} +Inf
chanq_weird_values{k="c"} -1.5e-3
chanq_weird_values{k="d"} 7 1700000000000
"""

BAD = {
    "no TYPE before samples": "# HELP a x\na 1\n",
    "no HELP": "# TYPE a gauge\na 1\n",
    "bad metric name": "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
    "bad label name": "# HELP a x\n# TYPE a gauge\na{1q=\"x\"} 1\n",
    "reserved label name": "# HELP a x\n# TYPE a gauge\na{__q=\"x\"} 1\n",
    "bad escape": "# HELP a x\n# TYPE a gauge\na{q=\"x\\t\"} 1\n",
    "unterminated label": "# HELP a x\n# TYPE a gauge\na{q=\"x} 1\n",
    "bad value": "# HELP a x\n# TYPE a gauge\na one\n",
    "counter without _total": "# HELP a x\n# TYPE a counter\na 1\n",
    "negative counter": "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
    "duplicate series": "# HELP a x\n# TYPE a gauge\na{q=\"1\"} 1\na{q=\"1\"} 2\n",
    "interleaved families": "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na{q=\"2\"} 1\n",
    "TYPE twice": "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",
    "unknown type": "# HELP a x\n# TYPE a meter\na 1\n",
    "HELP after samples": "# TYPE a gauge\na 1\n# HELP a x\n",
    "no final newline": "# HELP a x\n# TYPE a gauge\na 1",
    "histogram not cumulative": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 3\nh_bucket{le=\"+Inf\"} 5\nh_sum 1\nh_count 5\n",
    "histogram without +Inf": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_sum 1\nh_count 5\n",
    "histogram le not increasing": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    "histogram count mismatch": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    "histogram without sum": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",
    "sample of an undeclared family": "# HELP a x\n# TYPE a gauge\na 1\nb 2\n",
    "missing value": "# HELP a x\n# TYPE a gauge\na\n",
}


def test_a_correct_exposition_passes():
    errors = promcheck.check(GOOD)
    assert errors == [], errors


def test_each_mistake_is_caught():
    missed = [name for name, text in BAD.items() if not promcheck.check(text)]
    assert not missed, "promcheck accepted: %s" % ", ".join(missed)


if __name__ == "__main__":
    sys.exit(main([test_a_correct_exposition_passes, test_each_mistake_is_caught]))
