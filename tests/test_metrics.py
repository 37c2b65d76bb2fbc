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


def test_pairings_differ_on_spurious_and_crossed_predictions():
    """Item A: gold 1, 2, 3 s; predictions 1.01, 2.01, 3.01 plus a spurious 0.5. Positional pairs
    0.5-1, 1.01-2, 2.01-3 (0 of 3 within 20 ms); greedy and both Hungarians find the 10 ms partners (3 of 3).
    Item B: gold 1.00, 1.03; predictions 1.02, 0.95. Greedy gives 1.00 its nearest (1.02, 20 ms), leaving
    0.95 for 1.03 (80 ms): total 100 ms. L1-optimal: 1.00-0.95 (50) + 1.03-1.02 (10) = 60 ms.
    Item C: gold 1.00, 1.05; predictions 1.03, 1.20. L1-optimal 1.00-1.03 (30) + 1.05-1.20 (150) = 180 ms,
    none within 20; accuracy-optimal at 20 ms pairs 1.05-1.03 (20 ms): 1 hit."""
    a = ([0.5, 1.01, 2.01, 3.01], [1.0, 2.0, 3.0])
    b = ([1.02, 0.95], [1.00, 1.03])
    c = ([1.03, 1.20], [1.00, 1.05])
    expect = {  # pairing -> hits within 20 ms in A, B, C
        "positional": (0, 1, 0),
        "greedy": (3, 1, 0),
        "hungarian_l1": (3, 1, 0),
        "hungarian_acc": (3, 1, 1),
    }
    for pairing, hits in expect.items():
        got = []
        for pred, gold in (a, b, c):
            m = TimestampMetrics(pairing=pairing)
            m.add(pred, gold)
            got.append(round(m.summary()["acc@20ms"] * len(gold)))
        assert tuple(got) == hits, pairing
    mad_b = {}
    for pairing in expect:
        m = TimestampMetrics(pairing=pairing)
        m.add(*b)
        mad_b[pairing] = m.summary()["mad_s"]
    # positional sorts: 0.95-1.00 (50), 1.02-1.03 (10) = 30 ms; greedy 20 + 80 = 50 ms; L1-optimal 30 ms
    assert mad_b["positional"] == pytest.approx(0.03) and mad_b["greedy"] == pytest.approx(0.05)
    assert mad_b["hungarian_l1"] == pytest.approx(0.03) and mad_b["hungarian_acc"] == pytest.approx(0.03)
    m = TimestampMetrics(pairing="positional")
    m.add(*a)
    assert m.summary()["extra"] == 1 and m.summary()["acc@100ms"] == 0.0
    with pytest.raises(ValueError, match="unknown pairing 'nearest'"):
        TimestampMetrics(pairing="nearest")


def test_paper_convention_rounds_to_1ms_and_charges_misses():
    """gold 1.0, 2.0, 3.0 s in a 4 s clip; predictions 1.0204 and 2.05 (one short).
    framecall: 20.4 ms > 20 ms is a miss at acc@20; MAD over the 2 paired = (20.4 + 50) / 2 = 35.2 ms.
    paper: 1.0204 rounds to 1.020, error 20 ms counts; the missed 3.0 is charged 4 / 2 = 2 s:
    MAD = (20 + 50 + 2000) / 3 = 690 ms."""
    pred, gold = [1.0204, 2.05], [1.0, 2.0, 3.0]
    ours = TimestampMetrics()
    ours.add(pred, gold)
    s = ours.summary()
    assert s["acc@20ms"] == 0.0 and s["mad_s"] == pytest.approx(0.0352) and s["missing"] == 1
    paper = TimestampMetrics(convention="paper")
    paper.add(pred, gold, duration_s=4.0)
    s = paper.summary()
    assert s["acc@20ms"] == pytest.approx(1 / 3) and s["mad_s"] == pytest.approx(0.690)
    # predictions beyond the gold count are dropped first (their truncation): greedy cannot reach 1.0
    greedy_paper = TimestampMetrics(pairing="greedy", convention="paper")
    greedy_paper.add([0.2, 1.0], [1.0], duration_s=2.0)
    greedy_ours = TimestampMetrics(pairing="greedy")
    greedy_ours.add([0.2, 1.0], [1.0])
    assert greedy_paper.summary()["mad_s"] == pytest.approx(0.8) and greedy_ours.summary()["mad_s"] == 0.0
    with pytest.raises(ValueError, match="duration_s must be given"):
        paper.add(pred, gold)


def test_table_names_the_pairing_column():
    m = TimestampMetrics(pairing="hungarian_acc")
    m.add([1.0], [1.0])
    row = {"acc@20ms": 0.5, "hungarian_acc/acc@20ms": 1.0, "hungarian_acc/mad_s": 0.001}
    table = format_table({"d": row}, ["acc@20ms", "hungarian_acc/acc@20ms", "hungarian_acc/mad_s"])
    assert "| acc@20ms (%) | acc@20ms (%) hungarian_acc | MAD (ms) hungarian_acc |" in table
    assert "| d | 50.0 | 100.0 | 1.0 |" in table
    per_pos = m.by_event_position()
    assert per_pos["0-4s"]["acc@20ms"] == 1.0


def test_score_records_reports_each_pairing_and_the_table_says_which():
    from framecall.train.evaluation import flat_metrics, results_table, score_records, usable_decoders

    records = [{"task": "words_all", "gold": [1.0, 2.0, 3.0], "duration_s": 4.0,
                "preds": {"topn_nms": [0.5, 1.01, 2.01, 3.01]}}]  # a spurious 0.5 and 3 good ones
    scores = score_records(records, ["topn_nms"], pairings=("positional", "hungarian_acc"))
    row = scores["topn_nms"]["all"]
    assert row["acc@20ms"] == 0.0 and row["hungarian_acc/acc@20ms"] == 1.0
    table = results_table(scores, "T", ("positional", "hungarian_acc"))
    assert "pairing: positional; hungarian_acc columns marked; conventions: framecall" in table
    assert "acc@20ms (%) hungarian_acc" in table
    assert flat_metrics(scores, "val")["val_topn_nms_hungarian_acc_acc20ms"] == 1.0
    paper = score_records(records, ["topn_nms"], pairings=("greedy",), convention="paper")["topn_nms"]["all"]
    assert paper["acc@20ms"] == pytest.approx(2 / 3)  # truncated to the first 3: 0.5, 1.01, 2.01
    with pytest.raises(ValueError, match="unknown pairing"):
        score_records(records, ["topn_nms"], pairings=("hungarian",))
    poisson = usable_decoders(["all"], "poisson")
    assert "smoothed_posterior_mode" in poisson and "smoothed_topk" not in poisson
    assert usable_decoders(["all", "tokens"], "binary", token_output=True)[-1] == "tokens"
    assert "posterior_mode" not in usable_decoders(["all"], "binary")


def test_eval_and_head_config_are_validated():
    from framecall.config import ConfigError, build_config
    from framecall.train.config import TrainJobConfig

    cfg = build_config(TrainJobConfig, flags={}, overrides=[
        "model.head_bias=-6.9", "model.head_weight_init=torch_default", "eval.pairings=[positional,greedy]",
        "eval.conventions=paper", "eval.decoders=[all]"])
    assert cfg.head_init_bias == -6.9 and cfg.eval.pairings == ["positional", "greedy"]
    assert build_config(TrainJobConfig, flags={}, overrides=[]).head_init_bias == -6.0
    assert build_config(TrainJobConfig, flags={}, overrides=["train.loss=binary"]).head_init_bias == 0.0
    for bad, msg in (("eval.pairings=[hungarian]", "unknown pairing 'hungarian'"),
                     ("eval.conventions=authors", "eval.conventions must be one of"),
                     ("model.head_weight_init=xavier", "model.head_weight_init must be one of"),
                     ("eval.default_decoder=all", "unknown decoder 'all'")):
        with pytest.raises((ConfigError, ValueError), match=msg):
            build_config(TrainJobConfig, flags={}, overrides=[bad])
