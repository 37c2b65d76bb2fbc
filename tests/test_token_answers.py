"""Lenient parsing of generated timestamp lists."""

import pytest

from framecall.token_answers import parse_timestamps


@pytest.mark.parametrize("text,times,status", [
    ("[0.21, 0.49, 1.5]", [0.21, 0.49, 1.5], "ok"),
    ('[{"word": "much", "start": 0.63}]', [0.63], "ok"),
    ('sure: [{"speaker": 2, "start": 4.25}] done', [4.25], "recovered"),  # stray text around the list
    ('[{"word": "much", "start": 0.63}, {"word": "so", "sta', [0.63], "recovered"),  # cut off mid-list
    ("[0.21, 0.4", [0.21, 0.4], "recovered"),  # no closing bracket: the numbers still count
    ("h0808 how", [], "failed"),  # digits glued to letters are not numbers
    ("", [], "failed"),
    ("[]", [], "ok"),
    ('[{"word": "x"}]', [], "failed"),  # a list without times
])
def test_parse_timestamps(text, times, status):
    assert parse_timestamps(text) == (times, status)
