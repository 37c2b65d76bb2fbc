"""Batch prediction writes WebVTT (read back with webvtt-py) holding the Python API's word times."""

import pytest

from framecall.client import main
from tests_helpers import make_checkpoint, speech_clip


@pytest.mark.slow
def test_batch_prediction_writes_vtt_with_the_python_api_words(ray_session, tmp_path):
    import numpy as np
    import soundfile as sf

    from framecall.formats import read_vtt
    from framecall.inference import FrameLocalizer

    texts = {"a": "the cat sat on the mat", "b": "a dog ran"}
    for name, text in texts.items():  # speech, 1 s of silence, the speech again: gaps between words
        clip = speech_clip(text, seed=len(name))[0]
        sf.write(tmp_path / f"{name}.wav", np.concatenate([clip, np.zeros(16000, np.float32), clip]), 16000)
    (tmp_path / "list.tsv").write_text("".join(f"{n}.wav\t{t} {t}\n" for n, t in texts.items()))
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words_all"])
    out = tmp_path / "vtt"
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "list.tsv"), "--output", str(out),
                 "--format", "vtt"]) == 0
    local = FrameLocalizer.from_pretrained(ckpt)
    for name, text in texts.items():
        cues = read_vtt(out / f"{name}.vtt")  # webvtt-py parses the file
        want = local.align(str(tmp_path / f"{name}.wav"), f"{text} {text}").words
        assert [c.label for c in cues] == [w.word for w in want] == f"{text} {text}".split()
        assert [t for c in cues for t in (c.start, c.end)] == pytest.approx(
            [t for w in want for t in (w.start, w.end)], abs=2e-3)
        assert any(a.end < b.start - 0.1 for a, b in zip(cues, cues[1:]))  # the silence shows
