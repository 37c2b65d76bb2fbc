import math

import pytest

from framecall.metrics import TimestampMetrics, by_num_events, count_bucket, format_table, score_item


def test_positional_pairing_misses_and_extras():
    s = score_item([1.0, 0.5], [0.51, 1.05, 2.0])  # sorted: 0.5<->0.51, 1.0<->1.05, miss 2.0
    assert s.abs_errors_s.tolist() == pytest.approx([0.01, 0.05])
    assert (s.missing, s.extra) == (1, 0)
    s = score_item([0.1, 0.2, 0.3], [0.2])
    assert (s.missing, s.extra) == (0, 2) and s.abs_errors_s.tolist() == pytest.approx([0.1])


def test_summary_hand_computed():
    """3 gold events: errors 0.01 and 0.05, one missing.
    acc@20 = 1/3, acc@40 = 1/3, acc@100 = 2/3 (the miss counts as wrong), MAD = 0.03 s.
    Second item: exact, 1 event. Totals over 4 events: acc@20 = 2/4."""
    m = TimestampMetrics()
    m.add([1.0, 0.5], [0.51, 1.05, 2.0])
    out = m.summary()
    assert out["acc@20ms"] == pytest.approx(1 / 3) and out["acc@100ms"] == pytest.approx(2 / 3)
    assert out["mad_s"] == pytest.approx(0.03) and out["missing"] == 1
    assert out["count_error"] == 1 and out["count_exact"] == 0
    m.add([3.0], [3.0])
    out = m.summary()
    assert out["acc@20ms"] == pytest.approx(0.5) and out["events"] == 4 and out["count_exact"] == 0.5


def test_exact_tolerance_boundary_counts():
    m = TimestampMetrics()
    m.add([0.52], [0.50])  # exactly 20 ms off, in float
    assert m.summary()["acc@20ms"] == 1.0


def test_buckets_and_table():
    assert [count_bucket(n) for n in (1, 5, 6, 25, 26, 90)] == ["1-5", "1-5", "6-10", "21-25", "26+", "26+"]
    m = TimestampMetrics()
    m.add([0.1], [0.1])
    m.add([float(i) for i in range(7)], [float(i) + 0.04 for i in range(7)])  # MAD 7 * 0.04 / 8 = 35 ms
    buckets = m.by_bucket(by_num_events)
    assert list(buckets) == ["1-5", "6-10"] and buckets["6-10"]["acc@20ms"] == 0.0
    pos = m.by_event_position(width_s=4.0)
    assert list(pos) == ["0-4s", "4-8s"] and pos["4-8s"]["events"] == 3
    table = format_table({"poisson": m.summary()}, ["acc@20ms", "acc@100ms", "mad_s"], title="T2")
    assert "| poisson | 12.5 | 100.0 | 35.0 |" in table and "MAD (ms)" in table
    assert math.isnan(TimestampMetrics().summary()["acc@20ms"])
