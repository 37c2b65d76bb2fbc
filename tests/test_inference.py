"""The in-process engine as a Python API (no Serve, no allowed roots)."""

import pytest

from framecall.inference import FrameLocalizer
from framecall.models.checkpoint import CheckpointError
from tests_helpers import make_checkpoint, speech_clip


def test_from_pretrained_localize_and_align(tmp_path):
    ckpt = make_checkpoint(tmp_path / "anywhere" / "ckpt", ["words", "words_all"])
    loc = FrameLocalizer.from_pretrained(ckpt)  # any directory: admission is the server's business
    assert loc.info["name"] == "ckpt" and loc.info["version"] == "step-0" and loc.decoder == "topn_nms"
    assert next(loc.model.parameters()).device.type == "cpu"  # the runtime helper's choice here
    audio, words = speech_clip("the cat sat on the mat")
    got = loc.localize(audio, "When does the 1st occurrence of the word 'cat' occur?", num_events=1)
    assert got.num_events == 1 and 0 <= got.times_s[0] <= audio.size / 16000
    aligned = loc.align(audio, " ".join(words)).words
    assert [w.word for w in aligned] == words
    assert all(a.start <= a.end <= b.start for a, b in zip(aligned, aligned[1:]))
    with pytest.raises(ValueError, match="needs a Poisson head"):
        FrameLocalizer.from_pretrained(make_checkpoint(tmp_path / "b", ["words"], head="binary"),
                                       decoder="posterior_mode")
    with pytest.raises(CheckpointError, match="no manifest.json"):
        FrameLocalizer.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("head,tasks,question,n,task,error", [
    ("poisson", ["words"], " ", 1, None, "question: question is empty"),
    ("poisson", ["words"], "When does the 1st occurrence of the word 'a' occur?", 0, None, "num_events must be >= 1"),
    ("binary", ["words"], "When does the 1st occurrence of the word 'a' occur?", None, None, "give num_events"),
    ("poisson", ["words"], "What is the capital of France?", 1, None, "question type not recognised"),
    ("poisson", ["events"], "When does the 1st occurrence of the word 'a' occur?", 1, None, "not trained for 'words'"),
])
def test_domain_checks_name_the_field(head, tasks, question, n, task, error):
    from framecall.inference import QueryError, check_query

    with pytest.raises(QueryError, match=error):
        check_query(head, tasks, question, n, task)


def test_domain_checks_pass_a_good_query():
    from framecall.inference import check_query

    assert check_query("poisson", ["words"], "When does the 2nd occurrence of the word 'much' occur?", None) == "words"
    assert check_query("binary", [], "anything at all", 3, max_events=5) is None
