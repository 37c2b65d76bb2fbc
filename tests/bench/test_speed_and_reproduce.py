"""bench_speed measures both paths per bucket; reproduce --quick produces every table."""

import json

import pytest

from framecall.bench.speed import bench_speed, speed_figure, speed_table
from framecall.models.frame_model import CheckpointError
from tests_helpers import make_checkpoint


def test_bench_speed_times_both_paths_per_bucket(words_all_dir, tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words_all"], token_output=True)
    report = bench_speed(str(ckpt), str(words_all_dir), split=None, batch_sizes=(1, 2), repeats=1, warmup=0)
    rows = report["results"]
    assert {r["batch_size"] for r in rows} == {1, 2}
    assert {r["bucket"] for r in rows} <= {"1-5", "6-10", "11-15", "16-20", "21-25", "26+"} and len(rows) >= 2
    for r in rows:
        assert r["generation_s"] > 0 and r["frame_s"] > 0 and r["speedup"] == r["generation_s"] / r["frame_s"]
        assert r["generated_tokens"] >= 2 * r["mean_words"]  # a JSON list: at least a number and a comma per word
    assert "| 1-5 | 1 |" in speed_table(report) or "| 6-10 | 1 |" in speed_table(report)
    speed_figure(report).savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    both = bench_speed(str(ckpt), str(words_all_dir), split=None, batch_sizes=(1,), repeats=1, warmup=0,
                       target_formats=("compact", "json_objects"))
    by_format = {(r["bucket"], r["target_format"]): r for r in both["results"]}
    for bucket in {b for b, _ in by_format}:
        compact, paper = by_format[(bucket, "compact")], by_format[(bucket, "json_objects")]
        # the paper's objects name every word: more tokens per word, the same frame path
        assert paper["tokens_per_word"] > compact["tokens_per_word"] + 2
        assert paper["generated_tokens"] > compact["generated_tokens"] and paper["frame_s"] == compact["frame_s"]
    assert "| json_objects |" in speed_table(both)
    with pytest.raises(ValueError, match="target formats \\['yaml'\\] unknown"):
        bench_speed(str(ckpt), str(words_all_dir), target_formats=("yaml",))
    frame_only = make_checkpoint(tmp_path / "frame_only", ["words_all"])
    with pytest.raises(CheckpointError, match="token output"):
        bench_speed(str(frame_only), str(words_all_dir))


@pytest.mark.slow
def test_reproduce_quick_produces_every_table(ray_session, mlflow_uri, tmp_path):
    from framecall.bench.reproduce import ReproduceConfig, Reproduction

    out = tmp_path / "repro"  # in-process: the session's Ray (a second cluster on one machine is trouble)
    text = Reproduction(ReproduceConfig(output=str(out), data_root=str(out / "data"), quick=True),
                        tracking_uri=mlflow_uri).run()
    tables = (out / "tables.md").read_text()
    assert tables == text
    for title in ("Table 2", "Table 4", "harder case", "Table 5", "Decoders x Poisson losses",
                  "mismatched answers in train window"):
        assert title in tables
    for row in ("| tokens |", "| Poisson |", "| binary |", "| token output |", "| poisson_conditional | topn_nms |"):
        assert row in tables, row
    assert len(json.loads((out / "walls.json").read_text())) == 5  # quick: one model per (objective, loss)


def test_reproduce_refuses_an_unknown_window(tmp_path):
    from framecall.bench.reproduce import ReproduceConfig, Reproduction

    with pytest.raises(ValueError, match=r"lg_windows: unknown window\(s\) \['0-5'\]"):
        Reproduction(ReproduceConfig(output=str(tmp_path), data_root=str(tmp_path / "data"), lg_windows=("0-4", "0-5")))
