import numpy as np
import pytest
import torch

from framecall.frames.alignment import detect_speech_end, word_intervals
from framecall.frames.units import FrameGrid


def test_grid_conversions():
    g = FrameGrid(frame_s=0.04, subframes=4)
    assert g.unit_s == pytest.approx(0.01)
    assert g.to_index([0.0, 0.0099, 0.01, 0.631], num_frames=50).tolist() == [0, 0, 1, 50 - 1]
    assert g.to_index(0.63).item() == 63  # 0.63 / 0.01 is 62.99999... in floats
    assert g.to_seconds(63.5) == pytest.approx(0.635)
    assert g.to_seconds(torch.tensor([10.5])).tolist() == pytest.approx([0.105])
    assert g.num_subframes(25) == 100
    with pytest.raises(ValueError):
        FrameGrid(frame_s=0.0)


def test_word_intervals_and_speech_end():
    sr = 16000
    x = np.zeros(sr * 2, np.float32)
    x[int(0.3 * sr) : int(1.25 * sr)] = 0.5 * np.sin(np.arange(int(0.95 * sr)) * 0.2)
    end = detect_speech_end(x, sr)
    assert end == pytest.approx(1.25, abs=0.011)
    assert word_intervals([0.9, 0.3, 0.6], end) == [(0.3, 0.6), (0.6, 0.9), (0.9, end)]
    assert word_intervals([1.5], 1.2) == [(1.5, 1.5)]  # never ends before it starts
    assert detect_speech_end(np.zeros(100, np.float32), sr) == 0.0
