"""The client's wait before retrying a 503: the server's Retry-After, else backoff, always bounded."""

import pytest

from framecall.client import retry_delay


@pytest.mark.parametrize("header,attempt,expected", [
    ("1", 0, 1.0),            # the server's hint wins
    ("7", 3, 7.0),
    (None, 0, 0.5),           # no hint: 0.5 s, doubling per attempt
    (None, 3, 4.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", 1, 1.0),  # an HTTP date: backoff instead
    ("nan", 2, 2.0),          # a hostile hint cannot make the client sleep forever or crash
    ("inf", 0, 0.5),
    ("-5", 0, 0.0),
    ("100000", 0, 30.0),      # capped
    (None, 20, 30.0),
])
def test_retry_delay(header, attempt, expected):
    assert retry_delay(header, attempt, cap_s=30.0) == expected
