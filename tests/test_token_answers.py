"""Lenient parsing of generated timestamp lists."""

import pytest

from framecall.token_answers import format_word_times, parse_timestamps


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


@pytest.mark.parametrize("target_format", ["compact", "json_objects"])
def test_word_time_targets_parse_back(target_format):
    words = [("much", 0.634), ("of", 0.9), ("it", 1.2049)]
    text = format_word_times(words, target_format)
    assert parse_timestamps(text) == ([0.63, 0.9, 1.2], "ok")
    if target_format == "json_objects":  # the paper's form: one object per word, in order
        assert text == '[{"word": "much", "start": 0.63}, {"word": "of", "start": 0.9}, {"word": "it", "start": 1.2}]'
        assert parse_timestamps(text[:-12]) == ([0.63, 0.9], "recovered")  # cut off mid-object
    with pytest.raises(ValueError, match="target format 'xml'"):
        format_word_times(words, "xml")
