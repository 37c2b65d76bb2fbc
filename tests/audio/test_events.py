import numpy as np
import pytest

from framecall.audio.events import EVENT_GENERATORS, add_noise, make_event


@pytest.mark.parametrize("label", sorted(EVENT_GENERATORS))
def test_event_starts_at_its_first_sample(label):
    rng = np.random.default_rng(0)
    x = make_event(label, rng, 16000)
    assert x.dtype == np.float32 and x.size > 100
    assert x[0] == 0.0  # attack ramp from silence: the onset is sample 0
    assert np.abs(x[: int(0.01 * 16000)]).max() > 0.01  # and it is audible within 10 ms
    assert abs(np.abs(x).max() - 1.0) < 1e-5


def test_unknown_label_lists_valid_ones():
    with pytest.raises(ValueError, match="valid:.*chirp"):
        make_event("meow", np.random.default_rng(0), 16000)


def test_noise_at_requested_snr():
    rng = np.random.default_rng(1)
    sig = np.sin(np.linspace(0, 2000, 160000)).astype(np.float32)
    noisy = add_noise(sig, 10.0, rng)
    snr = 10 * np.log10(np.mean(sig**2) / np.mean((noisy - sig) ** 2))
    assert abs(snr - 10.0) < 0.2
