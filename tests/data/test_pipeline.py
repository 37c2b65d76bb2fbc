"""Ray Data pipeline: streaming featurization, bad-row policies, schema errors."""

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from framecall.data.collate import FrameCollator
from framecall.data.pipeline import PipelineConfig, build_dataset, features_from_bytes, iterate_rows_locally
from framecall.data.schema import ShardSchemaError
from framecall.data.shards import ShardDirectoryError, ShardWriter, read_manifest
from framecall.data.synthetic import SynthConfig, generate


def _wav_bytes(x, subtype="FLOAT"):
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("corrupt")
    rows = list(generate(SynthConfig(task="events", num=5, seed=9, splits={"train": 1.0})))
    nan = np.zeros(16000, np.float32)
    nan[5] = np.nan
    rows[1]["audio"] = rows[1]["audio"][:200]  # truncated flac
    rows[2]["audio"] = _wav_bytes(nan)  # NaN samples
    rows[3]["audio"] = _wav_bytes(np.zeros(0, np.float32))  # zero-length
    rows[4]["audio"] = b""  # nothing at all
    with ShardWriter(out, rows_per_shard=5) as w:
        w.write_all(rows)
    return out, [r["id"] for r in rows]


def test_streams_featurized_rows(ray_session, words_all_dir):
    sd = build_dataset(words_all_dir, PipelineConfig(), split="train")
    rows = sd.dataset.take_all()
    assert len(rows) == read_manifest(words_all_dir)["counts"]["words_all"]["train"]
    for r in rows[:5]:
        feats = features_from_bytes(r["features"], r["num_mels"], r["num_frames"])
        assert feats.shape == (128, int(round(r["duration_s"] * 16000)) // 160)
        assert np.isfinite(feats).all() and feats.std() > 0
        assert len(r["event_times_s"]) == r["num_events"]
    assert sd.skip_report().count == 0


def test_ray_and_local_paths_agree(ray_session, words_all_dir):
    ray_rows = {r["id"]: r for r in build_dataset(words_all_dir, split="val").dataset.take_all()}
    local = {}
    for batch in iterate_rows_locally(words_all_dir, split="val"):
        for row in batch.to_pylist():
            local[row["id"]] = features_from_bytes(row["features"], row["num_mels"], row["num_frames"])
    assert set(local) == set(ray_rows) and local
    for rid, feats in local.items():
        r = ray_rows[rid]
        np.testing.assert_array_equal(features_from_bytes(r["features"], r["num_mels"], r["num_frames"]), feats)


def test_torch_batches_for_train_workers(ray_session, words_all_dir):
    sd = build_dataset(words_all_dir, split="train")
    seen = 0
    for batch in sd.dataset.iter_torch_batches(batch_size=8, collate_fn=FrameCollator()):
        assert batch["features"].shape[:2] == (len(batch["ids"]), 128)
        # every event lands in exactly one sub-frame: counts sum to the number of events
        assert batch["event_counts"].sum(1).tolist() == batch["num_events"].float().tolist()
        assert not (batch["event_counts"] * ~batch["subframe_mask"]).any()
        seen += len(batch["ids"])
    assert seen == read_manifest(words_all_dir)["counts"]["words_all"]["train"]


def test_bad_rows_fail_by_default_naming_shard_row_and_id(ray_session, corrupt_dir):
    out, ids = corrupt_dir
    with pytest.raises(Exception) as info:
        build_dataset(out, PipelineConfig(batch_size=5)).dataset.take_all()
    msg = str(info.value)
    assert "shard-00000.parquet row 1" in msg and ids[1] in msg and "cannot decode" in msg


def test_skip_policy_counts_and_reports_every_row(ray_session, corrupt_dir):
    out, ids = corrupt_dir
    sd = build_dataset(out, PipelineConfig(bad_rows="skip", batch_size=2))
    kept = sd.dataset.take_all()
    assert [r["id"] for r in kept] == [ids[0]]
    report = sd.skip_report()
    assert sorted(r["id"] for r in report.rows) == sorted(ids[1:])
    assert report.by_reason() == {"undecodable": 1, "non_finite": 1, "empty": 2}
    assert all("shard-00000.parquet" in r["shard"] for r in report.rows)


def test_schema_errors_before_any_task(ray_session, words_all_dir, tmp_path):
    first = sorted(words_all_dir.glob("shard-*.parquet"))[0]
    pq.write_table(pq.read_table(first).drop_columns(["num_events"]), tmp_path / "shard-00000.parquet")
    with pytest.raises(ShardSchemaError, match=r"shard-00000.parquet: missing column\(s\) \['num_events'\]"):
        build_dataset(tmp_path)
    with pytest.raises(ShardDirectoryError, match="no shard"):
        build_dataset(tmp_path / "nothing_here" if (tmp_path / "nothing_here").mkdir() is None else None)
