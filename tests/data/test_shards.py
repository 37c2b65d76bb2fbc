import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from framecall.data.schema import SHARD_SCHEMA, ShardSchemaError, check_schema
from framecall.data.shards import ShardDirectoryError, ShardWriter, list_shards, read_manifest, read_shard
from framecall.data.synthetic import SynthConfig, generate


def _rows(n=5, task="words", seed=0):
    return list(generate(SynthConfig(task=task, num=n, seed=seed)))


def test_writer_shards_and_manifest(tmp_path):
    rows = _rows(5)
    with ShardWriter(tmp_path, rows_per_shard=2, params={"x": 1}) as w:
        w.write_all(rows)
    paths = list_shards(tmp_path, verify=True)
    assert [p.name for p in paths] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    m = read_manifest(tmp_path)
    assert m["num_rows"] == 5 and [s["rows"] for s in m["shards"]] == [2, 2, 1]
    assert sum(m["counts"]["words"].values()) == 5 and m["params"] == {"x": 1}
    table = pa.concat_tables([pq.read_table(p) for p in paths])  # plain pyarrow reads them
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left


def test_multi_clip_rows_roundtrip(tmp_path):
    clip_rows = _rows(3, task="events")
    item = dict(clip_rows[0])
    item["id"] = "multi-0"
    item["clips"] = [
        {"audio": r["audio"], "sample_rate": 16000, "duration_s": r["duration_s"], "event_times_s": r["event_times_s"],
         "labels": ["x"], "speaker": None} for r in clip_rows
    ]
    with ShardWriter(tmp_path) as w:
        w.write(item)
    back = read_shard(list_shards(tmp_path)[0]).to_pylist()[0]
    assert len(back["clips"]) == 3 and back["clips"][1]["audio"] == clip_rows[1]["audio"]


def test_bad_rows_are_refused_at_write(tmp_path):
    row = _rows(1)[0]
    w = ShardWriter(tmp_path)
    w.write(row)
    with pytest.raises(ShardSchemaError, match="duplicate id"):
        w.write(row)
    bad = dict(row, id="b1", num_events=3)
    with pytest.raises(ShardSchemaError, match="'num_events' is 3"):
        w.write(bad)
    with pytest.raises(ShardSchemaError, match="outside"):
        w.write(dict(row, id="b2", event_times_s=[row["duration_s"] + 1]))
    with pytest.raises(ShardSchemaError, match="missing field"):
        w.write({k: v for k, v in row.items() if k != "prompt"})


def test_writer_refuses_non_empty_dir(tmp_path):
    with ShardWriter(tmp_path) as w:
        w.write_all(_rows(1))
    with pytest.raises(ShardDirectoryError, match="already holds 1 shard"):
        ShardWriter(tmp_path)


def test_checksum_and_schema_errors_name_the_shard(tmp_path):
    with ShardWriter(tmp_path, rows_per_shard=2) as w:
        w.write_all(_rows(4))
    victim = tmp_path / "shard-00001.parquet"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ShardDirectoryError, match="shard-00001.parquet: sha256 differs"):
        list_shards(tmp_path, verify=True)
    with pytest.raises(ShardSchemaError, match="shard-00001.parquet: not a readable parquet"):
        read_shard(victim)
    # a shard missing a column / with a wrong type
    table = pq.read_table(tmp_path / "shard-00000.parquet")
    pq.write_table(table.drop_columns(["event_times_s"]), tmp_path / "other.parquet")
    with pytest.raises(ShardSchemaError, match=r"other.parquet: missing column\(s\) \['event_times_s'\]"):
        read_shard(tmp_path / "other.parquet")
    wrong = table.set_column(table.schema.get_field_index("num_events"), "num_events",
                             pa.array([str(x) for x in table["num_events"].to_pylist()]))
    with pytest.raises(ShardSchemaError, match="column 'num_events' has type string"):
        check_schema(wrong.schema, "wrong.parquet")
    with pytest.raises(ShardDirectoryError, match="does not exist"):
        list_shards(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardDirectoryError, match="no shard"):
        list_shards(tmp_path / "empty")


def test_schema_version_is_recorded(tmp_path):
    with ShardWriter(tmp_path) as w:
        w.write_all(_rows(1))
    schema = pq.read_schema(list_shards(tmp_path)[0])
    assert schema.metadata[b"framecall.schema_version"] == b"1"
    assert schema.remove_metadata().equals(SHARD_SCHEMA.remove_metadata())
    assert json.loads((tmp_path / "_manifest.json").read_text())["schema_version"] == 1
