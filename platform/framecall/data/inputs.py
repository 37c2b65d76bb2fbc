"""Prediction inputs besides shards: a folder of audio files, a list file, a lhotse manifest, a
Hugging Face ``datasets`` folder. Each reader turns its input into :class:`InputItem` rows (audio by
path or bytes, the question to ask, the event count it implies) that batch prediction runs like
shard rows. Audio is not decoded here: a corrupt file fails its own row later, not the listing.

Formats (``--input-format``)::

    audio-dir  DIR of .wav/.flac/.ogg/.mp3 (recursive; one file works too); a sidecar DIR/x.lab or
               x.txt beside x.wav holds x's transcript (Montreal Forced Aligner's corpus layout)
    list       a text file, one item a line: PATH, or PATH<TAB>TEXT where TEXT is a question
               ("When does the 1st occurrence of the word 'cat' occur?") or else a transcript
    lhotse     a CutSet or RecordingSet manifest (.jsonl, .jsonl.gz); supervision texts are the transcript
    hf         a folder written by ``datasets.Dataset.save_to_disk`` with an ``Audio`` column
    shards     framecall shards (read by Ray Data directly, not here)

A row's question is ``--question`` when given, else the alignment (words_all) question of its
transcript; an item with neither is refused naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecall.prompts import alignment_prompt, task_of

INPUT_FORMATS = ("auto", "audio-dir", "list", "lhotse", "hf", "shards")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3")
"""What libsndfile (soundfile) decodes; mp3 needs libsndfile >= 1.1."""
LIST_SUFFIXES = (".tsv", ".txt", ".lst", ".list", ".scp")
LHOTSE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
TRANSCRIPT_SIDECARS = (".lab", ".txt")
UNKNOWN_COUNT = -1
"""``num_events`` of an item whose question states no count (a Poisson head estimates it)."""


class InputError(ValueError):
    """An input that cannot be listed; the message names the file (and line, cut or row)."""


@dataclass
class InputItem:
    """One recording and one question. ``source`` names it in errors (path, list line, cut id)."""

    id: str
    source: str
    question: str
    num_events: int = UNKNOWN_COUNT
    audio_path: str = ""
    audio: bytes = b""
    transcript: str | None = None
    offset_s: float = 0.0
    duration_s: float | None = None  # None: to the end of the recording
    problem: str = ""
    """Why this item cannot be asked (no question, a transcript with no words): it fails alone."""


def make_item(item_id: str, source: str, question: str | None, transcript: str | None, **audio: Any) -> InputItem:
    """An item with its question and count (:func:`ask`); a bad question/transcript is kept as its ``problem``."""
    try:
        q, n = ask(source, question, transcript)
    except InputError as e:
        return InputItem(item_id, source, "", UNKNOWN_COUNT, transcript=transcript, problem=str(e), **audio)
    return InputItem(item_id, source, q, n, transcript=transcript, **audio)


def ask(source: str, question: str | None, transcript: str | None) -> tuple[str, int]:
    """(question, num_events) of an item: ``question`` if given, else its transcript's alignment
    question. A k-th-occurrence question asks for one event; an alignment question for one per word."""
    if not question:
        if transcript is None:
            raise InputError(f"{source}: no question: give --question, or a transcript (list file text, "
                             "sidecar .lab/.txt, supervision text, --transcript-column)")
        if not transcript.split():
            raise InputError(f"{source}: transcript has no words")
        try:
            question = alignment_prompt(transcript)
        except ValueError as e:
            raise InputError(f"{source}: {e}") from None
    task, params = task_of(question)
    if task == "words_all":
        words = len(str(params.get("transcript", "")).split())
        return question, words or UNKNOWN_COUNT
    return question, 1 if task in ("words", "events", "speakers") else UNKNOWN_COUNT


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its name and contents (see the module doc); refuses a guess."""
    p = Path(path)
    name = p.name.lower()
    if "," in str(path) or name.endswith(".parquet"):
        return "shards"
    if p.is_file():
        for fmt, suffixes in (("audio-dir", AUDIO_SUFFIXES), ("list", LIST_SUFFIXES), ("lhotse", LHOTSE_SUFFIXES)):
            if name.endswith(suffixes):
                return fmt
        raise InputError(f"{path}: cannot tell the input format from the name; give --input-format")
    if not p.is_dir():
        raise InputError(f"{path}: no such file or directory")
    if (p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file():
        return "hf"
    if any(p.glob("shard-*.parquet")):
        return "shards"
    if any(f.suffix.lower() in AUDIO_SUFFIXES for f in p.rglob("*")):
        return "audio-dir"
    raise InputError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}), shards or datasets folder found; "
                     "give --input-format")


def read_inputs(path: str | Path, fmt: str = "auto", question: str | None = None,
                transcript_column: str | None = None) -> list[InputItem]:
    """The items of a non-shard input, in a stable order, ids unique (each names its result file)."""
    if fmt not in INPUT_FORMATS:
        raise InputError(f"unknown input format {fmt!r}; valid: {list(INPUT_FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"audio-dir": read_audio_dir, "list": read_list, "lhotse": read_lhotse, "hf": read_hf}
    if fmt not in readers:
        raise InputError(f"{path}: format {fmt} is read by Ray Data directly, not by read_inputs")
    if not Path(path).exists():
        raise InputError(f"{path}: no such file or directory")
    items = readers[fmt](Path(path), question, transcript_column)
    if not items:
        raise InputError(f"{path}: no items in this {fmt} input")
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise InputError(f"{item.source}: id {item.id!r} repeats that of {seen[item.id]}; ids name result files")
        seen[item.id] = item.source
    return items


def _sidecar_transcript(audio: Path) -> str | None:
    for suffix in TRANSCRIPT_SIDECARS:
        side = audio.with_suffix(suffix)
        if side.is_file():
            return side.read_text(encoding="utf-8").strip()
    return None


def read_audio_dir(path: Path, question: str | None, transcript_column: str | None = None) -> list[InputItem]:
    """Every audio file under ``path`` (or ``path`` itself); id: the relative path without suffix,
    ``/`` written ``__``."""
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*")
                                                 if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
    items = []
    for f in files:
        rel = f.name if path.is_file() else str(f.relative_to(path))
        rid = Path(rel).with_suffix("").as_posix().replace("/", "__")
        items.append(make_item(rid, str(f), question, _sidecar_transcript(f), audio_path=str(f)))
    return items


def read_list(path: Path, question: str | None, transcript_column: str | None = None) -> list[InputItem]:
    """``PATH[<TAB>TEXT]`` lines (blank lines and ``#`` comments skipped); relative paths are taken
    from the list file's folder. TEXT is a question when it reads as one, else a transcript."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        audio, _, text = line.partition("\t")
        audio_path = path.parent / audio.strip() if not Path(audio.strip()).is_absolute() else Path(audio.strip())
        text = text.strip()
        is_question = bool(text) and task_of(text)[0] is not None
        transcript = None if is_question or not text else text
        items.append(make_item(audio_path.stem, f"{audio_path} ({where})", text if is_question else question,
                               transcript, audio_path=str(audio_path)))
    return items


def _lhotse_cuts(path: Path):
    from lhotse import CutSet, RecordingSet, load_manifest

    try:
        manifest = load_manifest(path)
    except Exception as e:  # lhotse raises many types for a bad manifest; name the file
        raise InputError(f"{path}: not a lhotse manifest ({type(e).__name__}: {e})") from None
    if isinstance(manifest, RecordingSet):
        return CutSet.from_manifests(recordings=manifest)
    if not isinstance(manifest, CutSet):
        raise InputError(f"{path}: a {type(manifest).__name__}; give a CutSet or RecordingSet manifest")
    return manifest


def _lhotse_audio(cut: Any, where: str, base: Path) -> dict[str, Any]:
    """The audio of a single-source cut: a file path (relative: to the working directory, else to
    the manifest's folder) or in-memory bytes."""
    recording = getattr(cut, "recording", None)
    if recording is None or len(recording.sources) != 1:
        raise InputError(f"{where}: a cut of one recording with one audio source is needed (mixed or "
                         "multi-source cuts are not read)")
    src = recording.sources[0]
    if src.type == "file":
        file = Path(src.source)
        return {"audio_path": str(file if file.is_absolute() or file.exists() else base / file)}
    if src.type == "memory":
        return {"audio": bytes(src.source)}
    raise InputError(f"{where}: audio source type {src.type!r} is not read (file or memory only)")


def read_lhotse(path: Path, question: str | None, transcript_column: str | None = None) -> list[InputItem]:
    """Each cut of the manifest: its segment of the recording; transcript: its supervisions' texts."""
    items = []
    for cut in _lhotse_cuts(path):
        where = f"{path} cut {cut.id}"
        audio = _lhotse_audio(cut, where, path.parent)
        texts = [s.text for s in cut.supervisions if s.text]
        transcript = " ".join(texts) if texts else None
        name = audio.get("audio_path", "memory")
        items.append(make_item(cut.id, f"{name} ({where})", question, transcript, offset_s=float(cut.start),
                               duration_s=float(cut.duration), **audio))
    return items


def _hf_splits(path: Path) -> dict[str, Any]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as e:  # FileNotFoundError, or a folder of another layout
        raise InputError(f"{path}: not a Hugging Face datasets folder ({type(e).__name__}: {e})") from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"": loaded}


def _hf_audio_column(ds: Any, where: str) -> str:
    import datasets

    columns = [name for name, f in ds.features.items() if isinstance(f, datasets.Audio)]
    if len(columns) == 1:
        return columns[0]
    if "audio" in columns:
        return "audio"
    raise InputError(f"{where}: {'no Audio column' if not columns else f'several Audio columns {columns}'}; "
                     "one column of type datasets.Audio (or one named 'audio') is needed")


def read_hf(path: Path, question: str | None, transcript_column: str | None = None) -> list[InputItem]:
    """Each row of each split; id: its ``id`` column, else ``[split-]row``. The Audio column is read
    undecoded (embedded bytes, else the file path it names)."""
    import datasets

    items = []
    for split, ds in _hf_splits(path).items():
        where = f"{path}" + (f" split {split}" if split else "")
        column = _hf_audio_column(ds, where)
        if transcript_column and transcript_column not in ds.column_names:
            raise InputError(f"{where}: no column {transcript_column!r} (--transcript-column); "
                             f"columns: {ds.column_names}")
        ds = ds.cast_column(column, datasets.Audio(decode=False))
        for i, row in enumerate(ds):
            rid = str(row["id"]) if "id" in row else (f"{split}-{i:06d}" if split else f"{i:06d}")
            at = f"{where} row {i} (id={rid})"
            audio = row[column] or {}
            transcript = str(row[transcript_column]) if transcript_column else None
            if audio.get("bytes") or not audio.get("path"):  # no bytes and no path: fails alone as empty audio
                items.append(make_item(rid, at, question, transcript, audio=audio.get("bytes") or b""))
            else:
                items.append(make_item(rid, f"{audio['path']} ({at})", question, transcript,
                                       audio_path=audio["path"]))
    return items
