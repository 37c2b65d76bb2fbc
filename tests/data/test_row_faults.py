"""Rows that lie: non-finite durations, event times past the decoded audio, featurizer failures;
refused naming shard/row/field under ``fail``, counted under ``skip``."""

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from framecall.audio.features import FeatureParams
from framecall.data.pipeline import BadRowError, PipelineConfig, build_dataset, featurize_batch
from framecall.data.schema import ShardSchemaError, check_row
from framecall.data.shards import ShardWriter, list_shards
from framecall.data.synthetic import SynthConfig, generate


def _rows(n=3, seed=2):
    return list(generate(SynthConfig(task="words", num=n, seed=seed, max_seconds=2.0)))


@pytest.mark.parametrize("duration", [math.nan, math.inf, -math.inf])
def test_non_finite_duration_is_refused_naming_the_field(duration):
    row = {**_rows(1)[0], "duration_s": duration, "event_times_s": [], "num_events": 0}
    with pytest.raises(ShardSchemaError, match=r"shard-x row 7: field 'duration_s' must be finite and > 0"):
        check_row(row, "shard-x row 7")


def _shard_with_late_events(tmp_path):
    """Row 1 claims 30 s of audio (the bytes hold ~2 s) and an event at 25 s."""
    rows = _rows()
    rows[1].update(duration_s=30.0, event_times_s=[25.0], num_events=1)
    with ShardWriter(tmp_path / "data") as w:
        w.write_all(rows)
    return tmp_path / "data", rows[1]["id"]


def _table(data_dir):
    path = list_shards(data_dir)[0]
    table = pq.read_table(path)
    return table.append_column("path", pa.array([str(path)] * table.num_rows)), path


def test_event_times_past_the_decoded_audio_fail_naming_the_row(tmp_path):
    data, bad_id = _shard_with_late_events(tmp_path)
    table, path = _table(data)
    with pytest.raises(BadRowError, match=rf"{path} row 1 \(id='{bad_id}'\).*'event_times_s' has 25.0 s, after the "
                                          r"end of the decoded audio"):
        featurize_batch(table, PipelineConfig())


def test_featurizer_failure_is_a_row_error(tmp_path):
    data, _ = _shard_with_late_events(tmp_path)
    table, path = _table(data)
    with pytest.raises(BadRowError, match=rf"{path} row 0 .*log-mel failed on \d+ samples"):
        featurize_batch(table.slice(0, 1), PipelineConfig(features=FeatureParams(n_fft=0)))


@pytest.mark.slow
def test_skip_policy_counts_late_events_and_featurizer_failures(ray_session, tmp_path):
    data, bad_id = _shard_with_late_events(tmp_path)
    shard = build_dataset(data, PipelineConfig(bad_rows="skip"))
    assert shard.dataset.count() == 2
    report = shard.skip_report()
    assert report.by_reason() == {"event_after_audio": 1} and report.rows[0]["id"] == bad_id
    broken = build_dataset(data, PipelineConfig(bad_rows="skip", features=FeatureParams(n_fft=0)))
    assert broken.dataset.count() == 0
    assert broken.skip_report().by_reason() == {"event_after_audio": 1, "featurize": 2}
