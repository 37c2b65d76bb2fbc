"""The Serve engine without Serve: chunking and stitching, admission, question types, formats."""

import numpy as np
import pytest
import torch

from framecall.serving import (
    AdmissionError, Query, ServeSettings, admit_checkpoint, chunk_spans, engine_for, format_alignment,
    question_task, stitch,
)
from tests_helpers import make_checkpoint, speech_clip


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve_engine") / "ckpt", ["words", "words_all"])


def test_chunk_spans_cover_the_audio_on_the_token_grid():
    spans = chunk_spans(100_000, window=32_000, overlap=6_400, align=640)
    assert spans[0][0] == 0 and spans[-1][1] == 100_000
    assert all(a % 640 == 0 for a, _ in spans)
    assert all(b - a <= 32_000 for a, b in spans)
    assert all(spans[k + 1][0] < spans[k][1] for k in range(len(spans) - 1))  # overlapping
    assert chunk_spans(1000, None, 0, 640) == [(0, 1000)] == chunk_spans(1000, 32_000, 6_400, 640)


def test_stitch_takes_each_overlap_half_from_the_nearer_chunk():
    a = torch.zeros(10)
    b = torch.ones(10)
    out = stitch([a, b], [0, 6])  # overlap 6..10: the first half to a, the second to b
    assert out.shape == (16,)
    assert out[:8].eq(0).all() and out[8:].eq(1).all()


def test_long_audio_is_chunked_and_stitched_without_drift(ckpt):
    audio, _ = speech_clip("one two three four five six seven eight nine ten", seconds=5.0)
    whole = engine_for(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(ckpt.parent)]))
    chunked = engine_for(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(ckpt.parent)], chunk_seconds=2.0,
                                        chunk_overlap_seconds=0.5))
    q = "When does the 1st occurrence of the word 'five' occur?"
    full = whole.predict([Query(audio, q, 3, return_curve=True)])[0]
    parts = chunked.predict([Query(audio, q, 3, return_curve=True)])[0]
    assert full["chunks"] == 1 and parts["chunks"] == len(chunk_spans(80_000, 32_000, 8_000, 640)) == 4
    # the stitched curve is on the same grid as the whole recording's: same length, 10 ms units
    assert len(parts["curve"]["values"]) == len(full["curve"]["values"]) == 500
    assert len(parts["times_s"]) == 3 and all(0 <= t <= 5.0 for t in parts["times_s"])
    # the first chunk's own region is exactly what a 2 s forward pass gives
    first = chunked.predict([Query(audio[:32000], q, 1, return_curve=True)])[0]["curve"]["values"]
    assert np.allclose(parts["curve"]["values"][:150], first[:150], atol=1e-4)


def test_admission_refuses_paths_outside_the_roots(ckpt, tmp_path):
    with pytest.raises(AdmissionError, match="outside the allowed roots"):
        admit_checkpoint(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(tmp_path)]))
    with pytest.raises(AdmissionError, match="no registry configured"):
        admit_checkpoint(ServeSettings(checkpoint="models:/x/1", allowed_roots=[str(tmp_path)]))
    assert admit_checkpoint(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(ckpt.parent)])) == ckpt.resolve()


@pytest.mark.parametrize("question,task", [
    ("When does the 2nd occurrence of the word 'much' occur?", "words"),
    ("Transcript: a b. Based on the transcript, output the timestamps for every word.", "words_all"),
    ("When does the 3rd speaker start speaking?", "speakers"),
    ("When does the 1st occurrence of the event 'chirp' occur?", "events"),
    ("what is the capital of France?", None),
])
def test_question_task(question, task):
    assert question_task(question) == task


def test_alignment_formats():
    words = [{"word": "the", "start": 0.1, "end": 0.3}, {"word": "cat", "start": 0.3, "end": 0.3},
             {"word": "sat", "start": 0.5, "end": 0.9}]
    ctm = format_alignment(words, "ctm", 1.0, utterance="u1").splitlines()
    assert ctm == ["u1 1 0.100 0.200 the", "u1 1 0.300 0.000 cat", "u1 1 0.500 0.400 sat"]
    tg = format_alignment(words, "textgrid", 1.0)
    from praatio import textgrid

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "x.TextGrid").write_text(tg)
        parsed = textgrid.openTextgrid(str(Path(d) / "x.TextGrid"), includeEmptyIntervals=False)
    labels = [e.label for e in parsed.getTier("words").entries]
    assert labels == ["the", "cat", "sat"]
    with pytest.raises(ValueError, match="unknown format 'lrc'"):
        format_alignment(words, "lrc", 1.0)


def test_a_batch_of_mixed_lengths_answers_each_query_as_alone(ckpt):
    """Rows go through the model sorted by length in groups and are decoded as one padded batch: every
    query must still get its own answer, in the order asked, equal to asking it alone."""
    from framecall.inference import forward_groups

    engine = engine_for(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(ckpt.parent)]))
    rng = np.random.default_rng(3)
    texts = ["one two three", "four", "five six seven eight nine", "ten eleven", "a b c d e f g h"] * 3
    queries = []
    for i, text in enumerate(texts):
        audio, _ = speech_clip(text, seconds=float(rng.uniform(1.0, 4.0)))
        queries.append(Query(audio, "When is each word said?", num_events=1 + i % 4, return_curve=True))
    together = engine.predict(queries, max_rows=16)
    alone = [engine.predict([q])[0] for q in queries]
    assert [r["num_events"] for r in together] == [1 + i % 4 for i in range(len(texts))]
    for t, a in zip(together, alone):
        assert t["times_s"] == a["times_s"]
        np.testing.assert_allclose(t["curve"]["values"], a["curve"]["values"], atol=1e-3)
        np.testing.assert_allclose(t["confidences"], a["confidences"], atol=1e-3)
    assert forward_groups([5, 1, 4, 2, 3], 16, "cpu") == [[1, 3, 4, 2, 0]]
    assert forward_groups(list(range(20, 0, -1)), 32, "cpu")[0] == list(range(19, 11, -1))  # 8 shortest
    assert [len(g) for g in forward_groups([1] * 20, 16, "cuda")] == [16, 4]
