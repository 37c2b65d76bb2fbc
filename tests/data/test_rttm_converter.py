"""Diarization references (RTTM + audio, AMI/VoxConverse layout) into ``speakers`` shards, read back."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from framecall.audio.io import decode_audio
from framecall.data.converters import CorpusFormatError, convert_rttm
from framecall.data.shards import list_shards, read_manifest, read_shard
from framecall.prompts import speaker_question

ROOT = Path(__file__).resolve().parents[2]


def _wav(path, seconds, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), sr)


def _speaker(file_id, start, duration, label):
    return f"SPEAKER {file_id} 1 {start:.3f} {duration:.3f} <NA> <NA> {label} <NA> <NA>\n"


@pytest.fixture
def corpus(tmp_path):
    """rec1 (10 s, VoxConverse layout: rec1.wav + rec1.rttm) and ES2002a (6 s, AMI layout: nested
    ES2002a/audio/ES2002a.Mix-Headset.wav), one RTTM per recording in a folder."""
    _wav(tmp_path / "audio" / "rec1.wav", 10.0)
    _wav(tmp_path / "audio" / "ES2002a" / "audio" / "ES2002a.Mix-Headset.wav", 6.0)
    rttms = tmp_path / "rttm"
    rttms.mkdir()
    (rttms / "rec1.rttm").write_text(_speaker("rec1", 0.5, 2.5, "A") + _speaker("rec1", 2.0, 4.0, "B")
                                     + _speaker("rec1", 7.0, 2.0, "A") + _speaker("rec1", 8.2, 1.3, "C"))
    (rttms / "ES2002a.rttm").write_text(_speaker("ES2002a", 1.25, 1.0, "MEE006")
                                        + _speaker("ES2002a", 0.75, 0.5, "FEE005"))
    return tmp_path


def _rows(out):
    return {r["id"]: r for r in pa.concat_tables([read_shard(p) for p in list_shards(out)]).to_pylist()}


def test_rttm_windows_become_speaker_items_read_back_from_the_shards(corpus):
    report = convert_rttm(corpus / "rttm", corpus / "audio", corpus / "out", window_s=5.0, seed=3)
    rows = _rows(corpus / "out")
    # ES2002a's second window (5..6 s) has no speech: no item
    assert report.written == len(rows) == 3 and not report.skipped
    assert set(rows) == {"rttm-rec1-w0000", "rttm-rec1-w0001", "rttm-ES2002a-w0000"}
    # onsets per window: the first moment each speaker is heard in it (B's turn runs into window 1: 0.0)
    expected = {"rttm-rec1-w0000": (["A", "B"], [0.5, 2.0]), "rttm-rec1-w0001": (["B", "A", "C"], [0.0, 2.0, 3.2]),
                "rttm-ES2002a-w0000": (["FEE005", "MEE006"], [0.75, 1.25])}
    for item_id, (speakers, onsets) in expected.items():
        row, meta = rows[item_id], json.loads(rows[item_id]["meta"])
        k = row["query_index"]
        assert (meta["speakers"], meta["onsets_s"]) == (speakers, onsets)
        assert row["task"] == "speakers" and row["prompt"] == speaker_question(k)
        assert row["event_times_s"] == [onsets[k - 1]] and row["num_events"] == 1
        assert json.loads(row["target_text"]) == [{"speaker": k, "start": round(onsets[k - 1], 2)}]
    assert json.loads(rows["rttm-rec1-w0001"]["meta"])["window_start_s"] == 5.0
    samples, sr = decode_audio(rows["rttm-rec1-w0001"]["audio"])
    assert sr == 16000 and samples.size == 5 * 16000  # the window's own audio
    assert read_manifest(corpus / "out")["params"]["converter"] == "rttm"


def test_whole_recordings_through_the_job(corpus):
    spec = importlib.util.spec_from_file_location("convert_corpus", ROOT / "jobs" / "convert_corpus.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    job.main(["rttm", "--rttm", str(corpus / "rttm" / "rec1.rttm"), "--audio-dir", str(corpus / "audio"),
              "--output", str(corpus / "whole"), "--window-s", "0"])
    (row,) = _rows(corpus / "whole").values()
    assert row["id"] == "rttm-rec1" and row["duration_s"] == pytest.approx(10.0)
    assert json.loads(row["meta"])["onsets_s"] == [0.5, 2.0, 8.2]


def test_a_bad_rttm_line_is_named_by_file_and_line(corpus):
    bad = corpus / "rttm" / "rec1.rttm"
    bad.write_text(_speaker("rec1", 0.5, 2.5, "A") + "SPEAKER rec1 1 abc 2.0 <NA> <NA> B <NA> <NA>\n")
    with pytest.raises(CorpusFormatError, match=rf"{bad}:2: onset 'abc' is not a number"):
        convert_rttm(corpus / "rttm", corpus / "audio", corpus / "out")
    bad.write_text("SPEAKER rec1 1 0.5 -1.0 <NA> <NA> A <NA> <NA>\n")
    with pytest.raises(CorpusFormatError, match=rf"{bad}:1: duration '-1.0' must be a finite number >= 0"):
        convert_rttm(bad, corpus / "audio", corpus / "out")


def test_a_file_id_without_audio_fails_or_is_skipped_by_name(corpus):
    (corpus / "rttm" / "lost.rttm").write_text(_speaker("lost", 0.1, 1.0, "A"))
    with pytest.raises(CorpusFormatError, match=r"lost.rttm: file id 'lost' has no audio"):
        convert_rttm(corpus / "rttm", corpus / "audio", corpus / "out")
    report = convert_rttm(corpus / "rttm", corpus / "audio", corpus / "out2", on_error="skip")  # 30 s windows
    assert report.written == 2 and [s["input"] for s in report.skipped] == [str(corpus / "rttm" / "lost.rttm")]
    assert read_manifest(corpus / "out2")["params"]["skipped"][0]["reason"] == "CorpusFormatError"
