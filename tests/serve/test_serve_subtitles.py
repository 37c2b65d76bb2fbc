"""Serve's alignment answers are the Python API's (start confidences, energy-based ends) and come
as SubRip / WebVTT too: a real request over loopback HTTP, parsed back with the ``srt`` library."""

import base64

import numpy as np
import pytest
import requests

from tests_helpers import make_checkpoint, speech_clip, wav_bytes

pytestmark = pytest.mark.slow
TRANSCRIPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def subs_server(serve_url, tmp_path_factory):
    from ray import serve

    from framecall.serve_app import build_app

    root = tmp_path_factory.mktemp("serve_subs")
    ckpt = make_checkpoint(root / "ckpt", ["words_all"])
    serve.run(build_app({"checkpoint": str(ckpt), "allowed_roots": [str(root)], "max_batch_size": 4}),
              name="subs", route_prefix="/subs")
    yield f"{serve_url}/subs", ckpt
    serve.delete("subs")


def paused_speech():
    """'the cat sat', 1.5 s of silence, 'on the mat' (16 kHz float32): a gap energy-based ends show."""
    first, second = speech_clip("the cat sat", seed=1)[0], speech_clip("on the mat", seed=2)[0]
    return np.concatenate([first, np.zeros(24000, np.float32), second])


def test_align_as_srt_reads_back_with_the_json_words_times(subs_server):
    import srt

    from framecall.inference import FrameLocalizer

    url, ckpt = subs_server
    samples = paused_speech()
    body = {"audio_b64": base64.b64encode(wav_bytes(samples)).decode(), "transcript": TRANSCRIPT}
    r = requests.post(f"{url}/v1/align", json={**body, "format": "srt"}, timeout=120)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("application/x-subrip")
    subs = list(srt.parse(r.text))
    words = requests.post(f"{url}/v1/align", json=body, timeout=120).json()["words"]
    assert [s.content for s in subs] == [w["word"] for w in words] == TRANSCRIPT.split()
    for sub, w in zip(subs, words):  # SRT keeps milliseconds
        assert sub.start.total_seconds() == pytest.approx(w["start"], abs=1e-3)
        assert sub.end.total_seconds() == pytest.approx(w["end"], abs=1e-3)
    # the Python API's words: the same starts, confidences and energy-based ends (a gap before a start)
    local = FrameLocalizer.from_pretrained(ckpt).align(samples, TRANSCRIPT)
    assert [t for w in local.words for t in (w.start, w.end)] == pytest.approx(
        [t for w in words for t in (w["start"], w["end"])], abs=2e-3)
    assert [w["confidence"] for w in words] == pytest.approx([w.confidence for w in local.words], abs=2e-3)
    assert any(a["end"] < b["start"] for a, b in zip(words, words[1:]))
