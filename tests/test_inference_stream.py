"""A long audio file streamed window by window (batch prediction, FrameLocalizer.localize) answers
as the in-memory path does on the decoded recording."""

import json

import numpy as np
import pytest
import soundfile as sf

from tests_helpers import make_checkpoint

QUESTION = "When does the 1st occurrence of the word 'cat' occur?"


def _speechlike(rate: int, seconds: float, channels: int) -> np.ndarray:
    """Tones switching pitch every 0.5 s over noise: a curve with structure, so windows matter."""
    rng = np.random.default_rng(rate + channels)
    t = np.arange(int(rate * seconds)) / rate
    pitch = 150 + 100 * rng.integers(0, 5, int(seconds * 2) + 1)[(t * 2).astype(int)]
    x = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(t.size)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32) * np.linspace(0.5, 1, channels)


@pytest.mark.slow
@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2)])
def test_streamed_file_equals_the_in_memory_path(tmp_path, rate, channels):
    from framecall.audio.io import decode_audio
    from framecall.batch_predict import PredictActor, PredictConfig, items_table
    from framecall.config import to_dict
    from framecall.data.inputs import read_inputs
    from framecall.inference import Query

    path = tmp_path / "three_minutes.flac"
    sf.write(path, _speechlike(rate, 180.0, channels), rate, subtype="PCM_16")
    cfg = PredictConfig(checkpoint=str(make_checkpoint(tmp_path / "ckpt", ["words"])), output=str(tmp_path / "o"),
                        batch_size=4, device="cpu")
    (tmp_path / "o").mkdir()
    actor = PredictActor(to_dict(cfg))
    engine = actor.engine
    samples, _ = decode_audio(path)
    in_memory = engine.predict([Query(samples, QUESTION, max_events=20, return_curve=True)], max_rows=4)[0]
    assert in_memory["chunks"] == 7 and in_memory["num_events"] >= 2  # ceil((180 - 30) / 26) + 1 windows

    streams: dict = {}
    batch = {k: np.array(v, dtype=object) for k, v in items_table(read_inputs(path, "auto", QUESTION)).to_pydict()
             .items()}
    query = actor._query(batch, 0, "three_minutes", streams)
    assert list(streams) == [0] and query.samples.size == 0 and query.num_events == 1  # streamed: no samples held
    streamed = engine.predict_windows(streams[0], Query(query.samples, QUESTION, max_events=20, return_curve=True),
                                      max_rows=4)
    unit = engine.grid.unit_s
    assert streamed["chunks"] == 7 and streamed["num_events"] == in_memory["num_events"]
    assert np.abs(np.subtract(streamed["times_s"], in_memory["times_s"])).max() <= unit
    np.testing.assert_allclose(streamed["curve"]["values"], in_memory["curve"]["values"], atol=1e-4)

    assert actor(batch)["status"] == ["ok"]  # the actor's call, as jobs/predict.py runs it
    written = json.loads((tmp_path / "o" / "three_minutes.json").read_text())
    expected = engine.predict([Query(samples, QUESTION, num_events=1)], max_rows=4)[0]
    assert abs(written["times_s"][0] - expected["times_s"][0]) <= unit and written["chunks"] == 7
    located = engine.localize(path, QUESTION, num_events=1)  # the Python API streams a path too
    assert abs(located.times_s[0] - expected["times_s"][0]) <= unit
    assert located.duration_s == pytest.approx(samples.size / 16000)
