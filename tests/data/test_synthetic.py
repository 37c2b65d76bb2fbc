import json

import numpy as np
import pytest

from framecall.audio.io import decode_audio
from framecall.data.shards import ShardDirectoryError, ShardWriter
from framecall.data.synthetic import (HELDOUT_VOICES, MADE_BY_TRAINING, StaleDataError, SynthConfig, WindowUnreachable,
                                      ensure_synthetic, generate, generate_item, in_families, made_by_training,
                                      stale_params, synth_params)
from framecall.token_answers import parse_timestamps
from framecall.prompts import ordinal


@pytest.mark.parametrize("task", ["words", "words_all", "speakers", "events"])
def test_deterministic_and_consistent(task):
    cfg = SynthConfig(task=task, num=6, seed=7)
    a, b = list(generate(cfg)), list(generate(cfg))
    # labels, text and lengths do not depend on what espeak spoke before (see audio.espeak)
    keys = ("id", "split", "prompt", "target_text", "event_times_s", "duration_s", "meta")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    other = generate_item(SynthConfig(task=task, num=1, seed=8), 0)
    assert other["prompt"] != a[0]["prompt"] or other["event_times_s"] != a[0]["event_times_s"]
    for row in a:
        samples, sr = decode_audio(row["audio"])
        assert sr == 16000 and abs(samples.size / sr - row["duration_s"]) < 1e-3
        assert cfg.min_seconds - 1e-3 <= row["duration_s"] <= cfg.max_seconds + 1e-3
        times = row["event_times_s"]
        assert row["num_events"] == len(times) >= 1 and times == sorted(times)
        assert all(0 <= t <= row["duration_s"] for t in times)
        target = json.loads(row["target_text"])
        if task == "words_all":
            assert target == [round(t, 2) for t in times]
            assert row["prompt"].startswith("Transcript: ") and row["query_index"] is None
        else:
            assert len(target) == 1 and target[0]["start"] == round(times[0], 2)
            assert row["query_index"] >= 1 and row["answer"] == f"{times[0]:.2f}"


def test_words_question_names_the_kth_occurrence():
    for row in generate(SynthConfig(task="words", num=30, seed=2, min_seconds=4, max_seconds=6)):
        meta = json.loads(row["meta"])
        word = json.loads(row["target_text"])[0]["word"]
        occurrences = [t for w, t in meta["words"] if w == word]
        assert row["prompt"] == f"When does the {ordinal(row['query_index'])} occurrence of the word '{word}' occur?"
        assert occurrences[row["query_index"] - 1] == pytest.approx(row["event_times_s"][0], abs=1e-3)


def test_speakers_and_events_answers_follow_meta():
    for row in generate(SynthConfig(task="speakers", num=10, seed=1, max_seconds=8)):
        meta = json.loads(row["meta"])
        onsets = [s["onset_s"] for s in meta["speakers"]]
        assert onsets == sorted(onsets) and len(onsets) == meta["num_speakers"]
        assert onsets[row["query_index"] - 1] == pytest.approx(row["event_times_s"][0], abs=1e-3)
        assert len({s["voice"] for s in meta["speakers"]}) == len(onsets)  # distinct voices
    for row in generate(SynthConfig(task="events", num=10, seed=1)):
        meta = json.loads(row["meta"])
        label = json.loads(row["target_text"])[0]["event"]
        onsets = [e["onset_s"] for e in meta["events"] if e["label"] == label]
        assert onsets[row["query_index"] - 1] == pytest.approx(row["event_times_s"][0], abs=1e-4)


def test_event_onsets_are_exact_in_the_audio():
    cfg = SynthConfig(task="events", num=5, seed=4, snr_db=60.0)
    for row in generate(cfg):
        x, sr = decode_audio(row["audio"])
        for e in json.loads(row["meta"])["events"]:
            i = int(round(e["onset_s"] * sr))
            assert np.abs(x[max(0, i - 40) : i - 8]).max() < 0.01  # silence (noise floor) before
            assert np.abs(x[i : i + 160]).max() > 0.02  # sound within 10 ms after


@pytest.mark.parametrize("window", [(0.0, 4.0), (4.0, 8.0)])
def test_answer_window_restricts_questions_not_clip_length(window):
    for task in ("words", "speakers", "events"):
        rows = list(generate(SynthConfig(task=task, num=8, seed=5, min_seconds=8, max_seconds=8,
                                         answer_window=window)))
        for row in rows:
            assert window[0] <= row["event_times_s"][0] <= window[1]
            assert row["duration_s"] == pytest.approx(8.0, abs=1e-3)
    for row in generate(SynthConfig(task="words_all", num=4, seed=5, min_seconds=8, max_seconds=8,
                                    answer_window=window)):
        assert all(window[0] <= t <= window[1] for t in row["event_times_s"])


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="task"):
        SynthConfig(task="music")
    with pytest.raises(ValueError, match="answer_window starts at 9"):
        SynthConfig(task="words", max_seconds=5, answer_window=(9, 12))
    with pytest.raises(ValueError, match="min_seconds"):
        SynthConfig(min_seconds=3, max_seconds=2)
    with pytest.raises(WindowUnreachable, match="widen the window"):
        generate_item(SynthConfig(task="events", min_seconds=1.0, max_seconds=1.2, answer_window=(1.15, 1.2)), 0)
    with pytest.raises(ValueError, match="heldout_num > 0 needs heldout_voices"):
        SynthConfig(heldout_num=3)
    with pytest.raises(ValueError, match="hold out every training voice"):
        SynthConfig(heldout_voices=["en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland"])
    with pytest.raises(ValueError, match="events task has no voices"):
        SynthConfig(task="events", heldout_voices=["+klatt"], heldout_num=2)
    with pytest.raises(ValueError, match="target_format"):
        SynthConfig(target_format="yaml")
    with pytest.raises(ValueError, match="espeak has no voice en-xx"):
        list(generate(SynthConfig(num=1, heldout_voices=["en-xx"], heldout_num=1)))


def _voice(row):
    voice, _, variant = json.loads(row["meta"])["voice"].partition("+")
    return voice, variant


@pytest.mark.parametrize("task", ["words_all", "speakers"])
def test_heldout_voices_make_their_own_split(task):
    families = list(HELDOUT_VOICES)
    cfg = SynthConfig(task=task, num=12, seed=3, max_seconds=6, heldout_voices=families, heldout_num=8)
    rows = list(generate(cfg))
    inside, heldout = rows[:12], rows[12:]
    assert {r["split"] for r in heldout} == {"test_heldout_voice"}
    assert {r["split"] for r in inside} <= {"train", "val", "test"}

    def voices(row):
        meta = json.loads(row["meta"])
        names = [s["voice"] for s in meta["speakers"]] if task == "speakers" else [meta["voice"]]
        return [tuple(n.partition("+")[::2]) for n in names]

    assert all(not in_families(v, var, families) for r in inside for v, var in voices(r))
    assert all(in_families(v, var, families) for r in heldout for v, var in voices(r))
    # holding voices out adds items; the in-voice items keep their labels (earlier results stay comparable)
    plain = list(generate(SynthConfig(task=task, num=12, seed=3, max_seconds=6)))
    keys = ("id", "split", "prompt", "target_text", "event_times_s")
    assert [[r[k] for k in keys] for r in plain] == [[r[k] for k in keys] for r in inside]


def test_training_default_holds_out_the_same_families():
    from framecall.train.config import DataSection

    assert tuple(DataSection().synth_heldout_voices) == HELDOUT_VOICES
    assert "test_heldout_voice" in DataSection().extra_test_splits
    assert in_families("en-us", "klatt", ["+klatt"]) and in_families("en-us-nyc", None, ["en-us-nyc"])
    assert not in_families("en-us", "f5", ["en+f5"]) and in_families("en", "f5", ["en+f5"])


def test_json_objects_target_names_every_word():
    rows = list(generate(SynthConfig(task="words_all", num=4, seed=1, target_format="json_objects")))
    compact = list(generate(SynthConfig(task="words_all", num=4, seed=1)))
    for row, other in zip(rows, compact):
        words = json.loads(row["meta"])["words"]
        target = json.loads(row["target_text"])
        assert [o["word"] for o in target] == [w for w, _ in words]
        assert [o["start"] for o in target] == json.loads(other["target_text"])
        assert parse_timestamps(row["target_text"]) == (json.loads(other["target_text"]), "ok")
        assert row["event_times_s"] == other["event_times_s"]


def _manifest(d):
    return json.loads((d / "_manifest.json").read_text())


def test_stale_corpus_is_rebuilt_or_refused_never_reused(tmp_path):
    d = tmp_path / "corpus"
    cfg = SynthConfig(task="words_all", num=6, seed=0, max_seconds=3)
    ensure_synthetic(d, cfg, make_if_missing=True)
    first = _manifest(d)
    assert first["num_rows"] == 6 and first["params"]["made_by"] == MADE_BY_TRAINING
    assert stale_params(first["params"], cfg) == {}
    ensure_synthetic(d, cfg, make_if_missing=False)  # same parameters: reused as it is
    assert _manifest(d) == first
    wanted = SynthConfig(task="words_all", num=6, seed=0, max_seconds=3, heldout_voices=["+klatt"], heldout_num=2)
    with pytest.raises(StaleDataError, match=r"heldout_voices: \[\] -> \['\+klatt'\], heldout_num: 0 -> 2"):
        ensure_synthetic(d, wanted, make_if_missing=False)
    assert _manifest(d) == first  # refused: untouched
    ensure_synthetic(d, wanted, make_if_missing=True)
    rebuilt = _manifest(d)
    assert rebuilt["num_rows"] == 8 and rebuilt["counts"]["words_all"]["test_heldout_voice"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".corpus")]  # no leftovers
    with pytest.raises(ShardDirectoryError, match="make_if_missing is false"):
        ensure_synthetic(tmp_path / "absent", cfg, make_if_missing=False)


def test_legacy_and_user_corpora(tmp_path):
    """A corpus made before parameters were recorded in full counts as made with the defaults;
    one made by jobs/make_data.py is the user's and is used as it is."""
    legacy = tmp_path / "legacy"
    ensure_synthetic(legacy, SynthConfig(task="words_all", num=5), make_if_missing=True)
    manifest = _manifest(legacy)
    manifest["params"] = {"synth": {k: v for k, v in manifest["params"]["synth"].items()
                                    if k not in ("heldout_voices", "heldout_num", "heldout_split", "target_format")}}
    (legacy / "_manifest.json").write_text(json.dumps(manifest))
    assert stale_params(manifest["params"], SynthConfig(task="words_all", num=5)) == {}
    assert set(stale_params(manifest["params"], SynthConfig(task="words_all", num=5, target_format="json_objects"))) \
        == {"target_format"}
    assert made_by_training(legacy, manifest["params"])
    user = tmp_path / "user"
    with ShardWriter(user, params=synth_params(SynthConfig(task="words_all", num=3), "jobs/make_data.py")) as w:
        w.write_all(generate(SynthConfig(task="words_all", num=3)))
    before = _manifest(user)
    assert ensure_synthetic(user, SynthConfig(task="words_all", num=50), make_if_missing=True) == user.resolve()
    assert _manifest(user) == before


def test_training_job_checks_its_data_directory(tmp_path):
    from framecall.config import build_config
    from framecall.train.config import TrainJobConfig
    from framecall.train.runner import ensure_data

    d = tmp_path / "words"
    base = [f"data.data_dir={d}", "data.synth_num=4", "data.synth_heldout_num=2", "data.synth_max_seconds=2"]
    assert ensure_data(build_config(TrainJobConfig, overrides=base)) == [d.resolve()]
    assert _manifest(d)["counts"]["words_all"]["test_heldout_voice"] == 2
    stale = build_config(TrainJobConfig, overrides=[*base, "data.synth_num=5", "data.make_if_missing=false"])
    with pytest.raises(StaleDataError, match="num: 4 -> 5"):
        ensure_data(stale)
