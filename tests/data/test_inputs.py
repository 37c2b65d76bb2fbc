"""framecall.data.inputs: plain-audio inputs listed as items (no audio decoded, no Ray)."""

import numpy as np
import pytest
import soundfile as sf

from framecall.data.inputs import (UNKNOWN_COUNT, InputError, ask, detect_format, read_inputs)
from framecall.prompts import alignment_prompt

QUESTION = "When does the 1st occurrence of the word 'cat' occur?"


def _wav(path, seconds=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(16000 * seconds), np.float32), 16000)
    return path


def test_audio_dir_recursive_ids_and_sidecar_transcripts(tmp_path):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "spk1" / "b.flac")
    (tmp_path / "a.lab").write_text("the cat sat\n")
    (tmp_path / "notes.md").write_text("not audio")
    items = read_inputs(tmp_path, "auto", question=None)
    assert [i.id for i in items] == ["a", "spk1__b"]
    a, b = items
    assert (a.question, a.num_events, a.transcript) == (alignment_prompt("the cat sat"), 3, "the cat sat")
    assert b.question == "" and "no question" in b.problem and str(tmp_path / "spk1" / "b.flac") in b.problem
    asked = read_inputs(tmp_path, "audio-dir", question=QUESTION)
    assert [(i.question, i.num_events, i.problem) for i in asked] == [(QUESTION, 1, "")] * 2


def test_list_file_text_is_a_question_or_a_transcript(tmp_path):
    _wav(tmp_path / "x.wav")
    _wav(tmp_path / "y.wav")
    listing = tmp_path / "items.tsv"
    listing.write_text(f"# comment\nx.wav\t{QUESTION}\n\n{tmp_path / 'y.wav'}\tthe dog ran away\nz.wav\t   \n")
    x, y, z = read_inputs(listing, "auto")
    assert (x.id, x.question, x.num_events, x.audio_path) == ("x", QUESTION, 1, str(tmp_path / "x.wav"))
    assert (y.question, y.num_events, y.transcript) == (alignment_prompt("the dog ran away"), 4, "the dog ran away")
    assert "line 5" in z.source and "no question" in z.problem
    speaker = "When does the 2nd speaker start speaking?"  # --question: asked where a line holds no question
    x, y, z = read_inputs(listing, "list", question=speaker)
    assert (x.question, y.question, y.transcript, z.question) == (QUESTION, speaker, "the dog ran away", speaker)
    assert detect_format(listing) == "list"


def test_a_transcript_with_no_words_fails_its_item_only(tmp_path):
    with pytest.raises(InputError, match="clip.wav: transcript has no words"):
        ask("clip.wav", None, "  ")
    assert ask("clip.wav", "What happens here?", None) == ("What happens here?", UNKNOWN_COUNT)


def test_lhotse_cutset_gives_segments_and_supervision_texts(tmp_path):
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rec = Recording.from_file(_wav(tmp_path / "long.wav", seconds=3.0), recording_id="long")
    sups = SupervisionSet.from_segments([SupervisionSegment("s1", "long", 1.0, 1.5, text="hello there")])
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings([rec]), supervisions=sups)
    cuts = cuts.trim_to_supervisions()
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    (item,) = read_inputs(tmp_path / "cuts.jsonl.gz", "auto")
    assert (item.offset_s, item.duration_s, item.transcript, item.num_events) == (1.0, 1.5, "hello there", 2)
    assert item.audio_path == str(tmp_path / "long.wav") and "cut " in item.source
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "recs.jsonl")
    (whole,) = read_inputs(tmp_path / "recs.jsonl", "lhotse", question=QUESTION)
    assert (whole.offset_s, whole.duration_s, whole.transcript) == (0.0, 3.0, None)


def test_hf_datasets_folder_with_an_audio_column(tmp_path):
    import datasets

    paths = [str(_wav(tmp_path / f"{k}.wav")) for k in range(2)]
    ds = datasets.Dataset.from_dict({"audio": paths, "text": ["the cat", "a b c"]}).cast_column("audio",
                                                                                             datasets.Audio())
    ds.save_to_disk(str(tmp_path / "hf"))
    items = read_inputs(tmp_path / "hf", "auto", transcript_column="text")
    assert [(i.id, i.num_events, i.transcript) for i in items] == [("000000", 2, "the cat"), ("000001", 3, "a b c")]
    assert items[0].audio[:4] == b"RIFF"  # the Audio column embeds the file's bytes
    with pytest.raises(InputError, match=r"hf: no column 'words' \(--transcript-column\)"):
        read_inputs(tmp_path / "hf", "hf", transcript_column="words")


def test_bad_inputs_are_refused_naming_them(tmp_path):
    with pytest.raises(InputError, match=r"unknown input format 'mp4-dir'; valid: \['auto', 'audio-dir'"):
        read_inputs(tmp_path, "mp4-dir")
    with pytest.raises(InputError, match="no audio files"):
        detect_format(tmp_path)
    with pytest.raises(InputError, match="missing.wav: no such file"):
        read_inputs(tmp_path / "missing.wav", "audio-dir")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="bad.jsonl: not a lhotse manifest"):
        read_inputs(tmp_path / "bad.jsonl", "auto")
    _wav(tmp_path / "a" / "x.wav")
    _wav(tmp_path / "b" / "x.wav")
    (tmp_path / "dup.tsv").write_text("a/x.wav\nb/x.wav\n")
    with pytest.raises(InputError, match=r"dup.tsv line 2\): id 'x' repeats"):
        read_inputs(tmp_path / "dup.tsv", "list", question=QUESTION)
