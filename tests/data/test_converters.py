"""Each converter on a tiny fixture written here in that corpus's own format."""

import json

import numpy as np
import pytest
import soundfile as sf

from framecall.audio.io import AudioError
from framecall.data.converters import (
    CorpusFormatError, convert_audioset_strong, convert_libricount, convert_librispeech_mfa,
)
from framecall.data.shards import list_shards, read_manifest, read_shard


def _wav(path, seconds=2.0, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 300 * t), sr)


TEXTGRID = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 2.0
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 2.0
        intervals: size = 5
        intervals [1]:
            xmin = 0
            xmax = 0.31
            text = ""
        intervals [2]:
            xmin = 0.31
            xmax = 0.62
            text = "much"
        intervals [3]:
            xmin = 0.62
            xmax = 1.05
            text = "ado"
        intervals [4]:
            xmin = 1.05
            xmax = 1.5
            text = "much"
        intervals [5]:
            xmin = 1.5
            xmax = 2.0
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 2.0
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 2.0
            text = ""
"""


def test_librispeech_mfa(tmp_path):
    audio, align = tmp_path / "LibriSpeech" / "dev-clean", tmp_path / "mfa"
    _wav(audio / "84" / "121" / "84-121-0000.flac")
    (align / "84" / "121").mkdir(parents=True)
    (align / "84" / "121" / "84-121-0000.TextGrid").write_text(TEXTGRID)
    report = convert_librispeech_mfa(audio, align, tmp_path / "out", tasks=("words_all", "words"), seed=1)
    assert report.written == 2 and report.skipped == []
    rows = {r["task"]: r for r in read_shard(list_shards(tmp_path / "out")[0]).to_pylist()}
    assert rows["words_all"]["event_times_s"] == [0.31, 0.62, 1.05]
    assert rows["words_all"]["prompt"].startswith("Transcript: much ado much.")
    w = rows["words"]
    word = json.loads(w["target_text"])[0]["word"]
    starts = {"much": [0.31, 1.05], "ado": [0.62]}[word]
    assert w["event_times_s"] == [starts[w["query_index"] - 1]]
    assert w["duration_s"] == pytest.approx(2.0)


def test_librispeech_missing_audio_fails_or_is_reported(tmp_path):
    (tmp_path / "mfa" / "1").mkdir(parents=True)
    (tmp_path / "mfa" / "1" / "1-2-3.TextGrid").write_text(TEXTGRID)
    (tmp_path / "audio").mkdir()
    with pytest.raises(CorpusFormatError, match=r"1-2-3.TextGrid: no audio"):
        convert_librispeech_mfa(tmp_path / "audio", tmp_path / "mfa", tmp_path / "out")
    _wav(tmp_path / "audio" / "1" / "ok.flac")
    (tmp_path / "mfa" / "1" / "ok.TextGrid").write_text(TEXTGRID)
    (tmp_path / "mfa" / "1" / "broken.TextGrid").write_text("not a textgrid")
    _wav(tmp_path / "audio" / "1" / "broken.flac")
    report = convert_librispeech_mfa(tmp_path / "audio", tmp_path / "mfa", tmp_path / "out2", on_error="skip")
    assert report.written == 1
    assert sorted(s["input"].rsplit("/", 1)[1] for s in report.skipped) == ["1-2-3.TextGrid", "broken.TextGrid"]
    assert len(read_manifest(tmp_path / "out2")["params"]["skipped"]) == 2  # reported, not silent


def test_libricount(tmp_path):
    root = tmp_path / "LibriCount10-0dB"
    _wav(root / "3_abc.wav", seconds=5.0)
    (root / "3_abc.json").write_text(json.dumps([
        {"sex": "F", "activity": [[2.5, 4.0]], "speaker_id": 1},
        {"sex": "M", "activity": [[0.4, 1.0], [3.0, 5.0]], "speaker_id": 2},
        {"sex": "F", "activity": [[1.2, 5.0]], "speaker_id": 3},
    ]))
    _wav(root / "0_empty.wav", seconds=5.0)
    (root / "0_empty.json").write_text("[]")
    report = convert_libricount(root, tmp_path / "out", seed=0)
    assert report.written == 1 and [s["reason"] for s in report.skipped] == ["no_speakers"]
    row = read_shard(list_shards(tmp_path / "out")[0]).to_pylist()[0]
    k = row["query_index"]
    assert row["event_times_s"] == [[0.4, 1.2, 2.5][k - 1]]
    assert json.loads(row["meta"])["num_speakers"] == 3
    (root / "3_abc.json").write_text(json.dumps([{"sex": "F"}]))
    with pytest.raises(CorpusFormatError, match=r"3_abc.json: speaker 0 has no 'activity'"):
        convert_libricount(root, tmp_path / "out2")


def test_audioset_strong(tmp_path):
    _wav(tmp_path / "audio" / "Yabc_30000.wav", seconds=10.0)
    _wav(tmp_path / "audio" / "Ydef_0.flac", seconds=10.0)
    tsv = tmp_path / "strong.tsv"
    tsv.write_text(
        "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
        "Yabc_30000\t1.5\t2.0\t/m/07qrkrw\n"
        "Yabc_30000\t0.25\t0.5\t/m/07qrkrw\n"
        "Ydef_0\t4.0\t6.0\t/m/05zppz\n"
    )
    names = tmp_path / "names.csv"
    names.write_text("index,mid,display_name\n0,/m/07qrkrw,Meow\n1,/m/05zppz,Male speech\n")
    report = convert_audioset_strong(tsv, tmp_path / "audio", tmp_path / "out", names)
    rows = {r["id"].split("-")[1]: r for r in read_shard(list_shards(tmp_path / "out")[0]).to_pylist()}
    assert report.written == 2
    abc = rows["Yabc_30000"]
    assert "'Meow'" in abc["prompt"] and abc["event_times_s"] == [[0.25, 1.5][abc["query_index"] - 1]]
    assert rows["Ydef_0"]["event_times_s"] == [4.0]
    bad = tmp_path / "bad.tsv"
    bad.write_text("segment_id\tonset\toffset\tlabel\nx\t1\t2\ty\n")
    with pytest.raises(CorpusFormatError, match=r"bad.tsv: missing column"):
        convert_audioset_strong(bad, tmp_path / "audio", tmp_path / "o3")
    (tmp_path / "audio" / "Ydef_0.flac").write_bytes(b"garbage")
    with pytest.raises(AudioError, match="Ydef_0.flac: cannot decode"):
        convert_audioset_strong(tsv, tmp_path / "audio", tmp_path / "o4")


def test_skip_mode_also_skips_rows_that_fail_the_row_check(tmp_path):
    """A row the shard check refuses (here: an event after the clip's end) is skipped and listed, not fatal."""
    from framecall.data.converters import ConversionReport, _run
    from framecall.data.schema import ShardSchemaError
    from framecall.data.synthetic import SynthConfig, generate

    rows = list(generate(SynthConfig(task="words", num=3, seed=1, max_seconds=2.0)))
    rows[1] = {**rows[1], "event_times_s": [99.0], "num_events": 1}
    with pytest.raises(ShardSchemaError, match="'event_times_s' has 99.0"):
        _run(iter(rows), tmp_path / "fail", {}, ConversionReport(), 8, "fail")
    report = _run(iter(rows), tmp_path / "skip", {}, ConversionReport(), 8, "skip")
    assert report.written == 2 and [s["reason"] for s in report.skipped] == ["ShardSchemaError"]
    assert report.skipped[0]["id"] == rows[1]["id"] and "99.0" in report.skipped[0]["detail"]
    assert len(read_manifest(tmp_path / "skip")["params"]["skipped"]) == 1  # reported, not silent
