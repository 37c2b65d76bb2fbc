"""Every task's prompt in one place: templates, rendering, recognition, the answer format.

Frame tasks (rows of the shard schema; the synthetic generator and the corpus converters
render them here, Serve recognises them here)::

    words      "When does the 2nd occurrence of the word 'much' occur?"       k, word
    events     "When does the 1st occurrence of the event 'chirp' occur?"     k, label
    speakers   "When does the 3rd speaker start speaking?"                     k
    words_all  "Transcript: a b c. Based on the transcript, output the timestamps for every word."   transcript

``render(task, **params)`` writes a question and ``task_of(question) -> (task, params)`` reads
one back (``render`` and ``task_of`` are inverses on the templates). A question in other words
that still names its type ("... occurrence of the word ...", "... speaker start ...", a leading
"Transcript:") is recognised with empty params, as Serve always did. Rendered strings are part
of the data format: shards and trained checkpoints depend on them byte for byte.

PolyAudio (several clips, a text answer): :func:`multi_clip_prompt` lays out
"Audio 1: <clip> ... question" and the answer-format hint; answers go inside
``<answer>...</answer>`` (:func:`answer_text`).

User text (questions, transcripts, words, labels) passes :func:`check_user_text` before it can
reach a prompt: special-token markers (``<|AUDIO|>``, ``<|im_end|>``, any ``<|...|>``), lone
surrogates and text over the named limits are refused with a :class:`PromptTextError` naming the
field. The templates' renderers check their text params the same way.

:func:`tokenizer_training_text` is what the tiny offline tokenizer is trained on: the
synthetic speech vocabulary, the event names and these templates. ``framecall.models``
imports it from here, never from ``framecall.data``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

# The words the synthetic corpus speaks (and so the words its questions and transcripts contain).
# A small vocabulary on purpose: words repeat within a clip, so "k-th occurrence" questions
# with k > 1 occur naturally.
VOCABULARY = (
    "the a of and to in is was he she it that for on with as his they be at one have this "
    "from or had by word but what some we can out other were all there when up use your how "
    "said an each which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound "
    "no most people my over know water than call first who may down side been now find any "
    "new work part take get place made live where after back little only round man year came "
    "show every good me give our under name very through just form much great think say help "
    "low line before turn cause same mean differ move right boy old too does tell sentence set "
    "three want air well also play small end put home read hand port large spell add even land "
    "here must big high such follow act why ask men change went light kind off need house picture"
).split()


# ---------------------------------------------------------------- user text

MAX_QUESTION_CHARS = 1_000
"""Longest question accepted (a rendered template is < 100 characters)."""
MAX_TRANSCRIPT_CHARS = 20_000
"""Longest transcript accepted: ~3,000 words, over 15 minutes of speech."""
MAX_WORD_CHARS = 100
"""Longest single word (or event label) in a question or transcript."""
SPECIAL_TOKEN = re.compile(r"<\|[^<>|\s]{1,64}\|>")
"""Any ``<|...|>`` marker. Qwen's chat, audio, vision and tool tokens are all of this form
(``<|im_start|>``, ``<|im_end|>``, ``<|AUDIO|>``, ``<|audio_bos|>``, ``<|endoftext|>``, ...), and a
tokenizer turns them into their special ids wherever they appear in the text."""


class PromptTextError(ValueError):
    """User text that must not reach a prompt; ``field`` names the request field at fault
    (the same ``field``/``message`` shape as ``inference.QueryError``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_user_text(text: str, field: str, max_chars: int = MAX_QUESTION_CHARS,
                    special_tokens: tuple[str, ...] = ()) -> str:
    """Refuse text that would change the prompt's structure or cost; returns it unchanged.

    Refused, not escaped: a special-token marker (:data:`SPECIAL_TOKEN`, or any of the tokenizer's
    ``special_tokens``) would otherwise become a real chat turn or an extra audio placeholder (which
    breaks the placeholder/feature count of the whole batch), and no question needs one; escaping
    would silently ask the model something the user did not write. Also refused: over
    ``max_chars`` characters, a word over :data:`MAX_WORD_CHARS`, lone surrogates (not encodable).
    """
    if not isinstance(text, str):
        raise PromptTextError(field, f"expected text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise PromptTextError(field, f"{len(text)} characters, over the limit of {max_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PromptTextError(field, f"not valid Unicode (lone surrogate at character {e.start})") from None
    marker = SPECIAL_TOKEN.search(text)
    found = marker.group(0) if marker else next((t for t in special_tokens if t and t in text), None)
    if found:
        raise PromptTextError(field, f"contains the special token {found!r}; special tokens are not allowed in text")
    longest = max(text.split(), key=len, default="")
    if len(longest) > MAX_WORD_CHARS:
        raise PromptTextError(field, f"a word of {len(longest)} characters, over the limit of {MAX_WORD_CHARS}")
    return text


def check_question(question: str, field: str = "question", special_tokens: tuple[str, ...] = ()) -> str:
    """:func:`check_user_text` with the question limit."""
    return check_user_text(question, field, MAX_QUESTION_CHARS, special_tokens)


def check_transcript(transcript: str, field: str = "transcript", special_tokens: tuple[str, ...] = ()) -> str:
    """:func:`check_user_text` with the transcript limit."""
    return check_user_text(transcript, field, MAX_TRANSCRIPT_CHARS, special_tokens)


def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 22 -> '22nd'."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


# ---------------------------------------------------------------- frame tasks

def word_question(k: int, word: str) -> str:
    """The ``words`` question: the k-th occurrence (1-based) of ``word``."""
    check_user_text(word, "word", MAX_WORD_CHARS)
    return f"When does the {ordinal(k)} occurrence of the word '{word}' occur?"


def event_question(k: int, label: str) -> str:
    """The ``events`` question: the k-th occurrence (1-based) of the event ``label``."""
    check_user_text(label, "label", MAX_WORD_CHARS)
    return f"When does the {ordinal(k)} occurrence of the event '{label}' occur?"


def speaker_question(k: int) -> str:
    """The ``speakers`` question: when the k-th speaker (1-based) starts."""
    return f"When does the {ordinal(k)} speaker start speaking?"


def alignment_prompt(transcript: str) -> str:
    """The ``words_all`` question; Serve's /v1/align asks it of a model trained on words_all."""
    check_transcript(transcript)
    return f"Transcript: {transcript}. Based on the transcript, output the timestamps for every word."


_ORD = r"(?P<k>\d+)(?:st|nd|rd|th)"


@dataclass(frozen=True)
class PromptTemplate:
    """One frame task's question: how to write it and how to recognise it."""

    task: str
    render: Callable[..., str]
    """Keyword params -> the question (byte-identical to the shards' ``prompt``)."""
    pattern: re.Pattern[str]
    """Full match of a rendered question; its named groups are the params (``k`` as int)."""
    cue: re.Pattern[str]
    """Searched when ``pattern`` does not match: a question in other words that names this type."""


# Order matters for recognition: the first template whose pattern (then cue) matches wins.
TEMPLATES: dict[str, PromptTemplate] = {
    "words_all": PromptTemplate(
        "words_all", alignment_prompt,
        re.compile(r"Transcript: (?P<transcript>.*)\. Based on the transcript, output the timestamps for every word\.",
                   re.S),
        re.compile(r"^\s*Transcript:", re.I)),
    "words": PromptTemplate(
        "words", word_question,
        re.compile(rf"When does the {_ORD} occurrence of the word '(?P<word>.*)' occur\?", re.S),
        re.compile(r"occurrence of the word\b", re.I)),
    "events": PromptTemplate(
        "events", event_question,
        re.compile(rf"When does the {_ORD} occurrence of the event '(?P<label>.*)' occur\?", re.S),
        re.compile(r"occurrence of the event\b", re.I)),
    "speakers": PromptTemplate(
        "speakers", speaker_question,
        re.compile(rf"When does the {_ORD} speaker start speaking\?"),
        re.compile(r"\bspeaker start", re.I)),
}


def render(task: str, **params: Any) -> str:
    """The question of ``task`` with ``params`` (words: k, word; events: k, label; speakers: k;
    words_all: transcript)."""
    if task not in TEMPLATES:
        raise ValueError(f"no prompt template for task {task!r}; valid: {list(TEMPLATES)}")
    return TEMPLATES[task].render(**params)


def task_of(question: str) -> tuple[str | None, dict[str, Any]]:
    """-> (task, params) of a question. A question rendered from a template gives its params
    (``k`` as int); one in other words that names its type gives ``(task, {})``; anything
    else ``(None, {})``."""
    for t in TEMPLATES.values():
        m = t.pattern.fullmatch(question)
        if m:
            params: dict[str, Any] = m.groupdict()
            if "k" in params:
                params["k"] = int(params["k"])
            return t.task, params
    for t in TEMPLATES.values():
        if t.cue.search(question):
            return t.task, {}
    return None, {}


# ---------------------------------------------------------------- PolyAudio and the answer format

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
ANSWER_TAGS = (ANSWER_OPEN, ANSWER_CLOSE)
ANSWER_HINT = f" Put your final answer inside {ANSWER_OPEN}{ANSWER_CLOSE}."
"""Appended to a multi-clip question (R1-AQA's answer format)."""


def answer_text(answer: str) -> str:
    """The supervised answer of a text task: ``<answer>{answer}</answer>``."""
    return f"{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def clip_label(k: int) -> str:
    """How clip ``k`` (1-based) is named in prompts, questions and answers: 'Audio k'."""
    return f"Audio {k}"


def multi_clip_prompt(question: str, audio_blocks: list[str], order: str = "audio_first",
                      answer_hint: str = ANSWER_HINT) -> str:
    """Several clips in one user turn, Qwen2-Audio's interleaved form: "Audio 1: <clip 1>\\n
    Audio 2: <clip 2>\\n ... question hint" (``audio_first``) or "question hint\\nAudio 1: ..."
    (``question_first``). ``audio_blocks`` are the backbone's placeholder runs, one per clip."""
    audios = "".join(f"{clip_label(k + 1)}: {block}\n" for k, block in enumerate(audio_blocks))
    return f"{audios}{question}{answer_hint}" if order == "audio_first" else f"{question}{answer_hint}\n{audios}"


# ---------------------------------------------------------------- system prompts

SYSTEM_PROMPTS = {
    "qwen2_audio": "You are a helpful assistant.",
    "qwen2_5_omni": ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
                     "perceiving auditory and visual inputs, as well as generating text and speech."),
}
"""Named system prompts: the default system turn of each model family's chat template (the
authors' code keeps it in the prompt; framecall's default is no system turn)."""


def resolve_system_prompt(value: str | None) -> str | None:
    """``model.system_prompt``: None / "none" -> no system turn; a name in :data:`SYSTEM_PROMPTS` -> its
    text; anything else is the text itself (checked like user text: no special-token markers)."""
    if value is None or value == "none":
        return None
    if value in SYSTEM_PROMPTS:
        return SYSTEM_PROMPTS[value]
    return check_user_text(value, "model.system_prompt")


def chat_turn(body: str, system_prompt: str | None = None) -> str:
    """One user turn in the Qwen chat format, opening the assistant's reply; a system turn first if given."""
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    return f"{system}<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"


# ---------------------------------------------------------------- the tiny tokenizer's text

def tokenizer_training_text() -> list[str]:
    """What the tiny offline tokenizer is trained on: the vocabulary, event names, the templates,
    JSON answers and numbers. Changing it changes the tiny models' vocabulary (bump their cache key)."""
    from framecall.audio.events import EVENT_GENERATORS

    lines = [" ".join(VOCABULARY), " ".join(sorted(EVENT_GENERATORS))]
    lines += [word_question(k, "much") for k in range(1, 12)]
    lines += [speaker_question(k) for k in range(1, 12)]
    lines += [alignment_prompt("a b c")]
    lines += ['[{"word": "much", "start": 0.63}, {"event": "chirp", "start": 1.5}, {"speaker": 2, "start": 4.25}]']
    lines += [" ".join(f"{i / 100:.2f}" for i in range(0, 3000, 7))]
    lines += ["user assistant system You are a helpful assistant. Audio 1: Audio 2:"]
    return lines * 4
