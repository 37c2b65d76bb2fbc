"""jobs/predict.py: Ray Data actor pool, one result per input, bad rows named or counted."""

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from framecall.data.shards import list_shards
from tests_helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _job():
    spec = importlib.util.spec_from_file_location("predict_job", ROOT / "jobs" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_predict_job_writes_one_result_per_row(ray_session, tiny_words_all, tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words_all"])
    ids = pq.read_table(list_shards(tiny_words_all), columns=["id"]).column("id").to_pylist()
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tiny_words_all), "--output",
                           str(tmp_path / "json"), "--actors", "2", "--batch-size", "4"])
    assert summary["rows"] == summary["written"] == len(ids) == 24
    first = json.loads((tmp_path / "json" / f"{ids[0]}.json").read_text())
    assert first["id"] == ids[0] and len(first["times_s"]) == first["num_events"] > 0
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tiny_words_all), "--output",
                           str(tmp_path / "ctm"), "--format", "ctm"])
    assert summary["written"] == 24
    table = pq.read_table(list_shards(tiny_words_all), columns=["id", "meta"]).to_pylist()
    meta_words = json.loads(table[0]["meta"])["transcript"].split()
    ctm = (tmp_path / "ctm" / f"{table[0]['id']}.ctm").read_text().splitlines()
    assert [line.split()[-1] for line in ctm] == meta_words
    assert all(line.startswith(table[0]["id"] + " 1 ") for line in ctm)


@pytest.mark.slow
def test_predict_bad_rows_fail_naming_the_row_or_are_counted(ray_session, tmp_path):
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    rows = list(generate(SynthConfig(task="words", num=3, seed=9, max_seconds=2.0)))
    rows[1]["audio"] = b"not flac at all"
    with ShardWriter(tmp_path / "data") as w:
        w.write_all(rows)
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    with pytest.raises(Exception, match=rf"id={rows[1]['id']}.*cannot decode audio"):
        _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "o1")])
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output",
                           str(tmp_path / "o2"), "--bad-rows", "skip"])
    assert (summary["rows"], summary["written"], summary["skipped"]) == (3, 2, 1)
    assert summary["results"][rows[1]["id"]].startswith("skipped: ")


@pytest.mark.parametrize("row_id", ["../escape", "a/b", "/abs", "..", ".", "", "a\\b", "nul\x00", " x", "_index",
                                    "x" * 201])
def test_row_ids_that_are_not_plain_file_names_are_refused(row_id, tmp_path):
    from framecall.batch_predict import PredictError, output_name

    with pytest.raises(PredictError, match="not usable as a result file name"):
        output_name(row_id, ".json")
    assert output_name("spk1-utt_00.7", ".json") == "spk1-utt_00.7.json"


@pytest.mark.slow
def test_path_like_ids_write_nothing_outside_the_output(ray_session, tmp_path):
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    rows = list(generate(SynthConfig(task="words", num=2, seed=4, max_seconds=2.0)))
    rows[0]["id"] = "../../escaped"
    with ShardWriter(tmp_path / "data") as w:
        w.write_all(rows)
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    out = tmp_path / "deep" / "out"
    with pytest.raises(Exception, match=r"id='\.\./\.\./escaped': not usable as a result file name"):
        _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output", str(out)])
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output", str(out),
                           "--bad-rows", "skip"])
    assert (summary["written"], summary["skipped"]) == (1, 1)
    assert not list(tmp_path.rglob("escaped*"))
