"""Real corpora into the same shards. Each converter reads the corpus's own format.

- LibriSpeech audio + Montreal Forced Aligner TextGrids (a ``words`` interval tier):
  ``words_all`` and/or ``words`` items.
- LibriCount: ``<count>_<name>.wav`` + ``<count>_<name>.json``, the JSON a list with one
  object per speaker carrying ``activity`` ([[start, end], ...] seconds) and optionally
  ``speaker_id``/``sex``: ``speakers`` items ("when does the k-th speaker start?").
- AudioSet strong labels: a TSV with ``segment_id, start_time_seconds, end_time_seconds,
  label`` (times relative to the segment) and one audio file per segment id in a folder,
  optionally a CSV mapping label ids (``/m/...``) to display names: ``events`` items.
- Diarization references (AMI, VoxConverse): RTTM ``SPEAKER`` turns (one file, or a folder of
  ``*.rttm``) + a folder of recordings named by file id, cut into windows: ``speakers`` items.

Missing or unreadable inputs fail with the file named by default; ``on_error="skip"``
skips them, and every skipped input is listed in the manifest's ``params.skipped``.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from framecall.audio.io import AudioError, decode_audio, encode_flac
from framecall.data.schema import ShardSchemaError
from framecall.data.shards import ShardWriter
from framecall.prompts import alignment_prompt, event_question, speaker_question, word_question

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")


class CorpusFormatError(ValueError):
    """An input file of a corpus is missing or not in that corpus's format. Names the file."""


@dataclass
class ConversionReport:
    written: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def _find_audio(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _row(item_id: str, task: str, split: str, source: str, samples: np.ndarray, sr: int, prompt: str,
         target: str, answer: str, times: list[float], query_index: int | None, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item_id, "task": task, "split": split, "source": source, "prompt": prompt,
        "target_text": target, "answer": answer, "audio": encode_flac(samples, sr), "sample_rate": sr,
        "duration_s": samples.size / sr, "event_times_s": times, "num_events": len(times),
        "query_index": query_index, "clips": [], "meta": json.dumps(meta),
    }


def _run(rows: Iterator[dict[str, Any]], output: Path, params: dict[str, Any], report: ConversionReport,
         rows_per_shard: int, on_error: str = "fail") -> ConversionReport:
    writer = ShardWriter(output, rows_per_shard=rows_per_shard, params=params)
    for row in rows:
        try:
            writer.write(row)  # the shard row check: times, counts, duration (after the input was read)
        except ShardSchemaError as e:
            if on_error == "fail":
                raise
            source = json.loads(row.get("meta") or "{}").get("audio_path", row.get("id"))
            report.skipped.append({"input": str(source), "id": str(row.get("id")), "reason": "ShardSchemaError",
                                   "detail": str(e)})
            continue
        report.written += 1
    writer.params["skipped"] = report.skipped
    writer.close()
    return report


def _handle(on_error: str, report: ConversionReport, path: Path, err: Exception) -> None:
    if on_error == "fail":
        if isinstance(err, (AudioError, CorpusFormatError)):
            raise err
        raise CorpusFormatError(f"{path}: {err}") from err
    report.skipped.append({"input": str(path), "reason": type(err).__name__, "detail": str(err)})


# ---------------------------------------------------------------- LibriSpeech + MFA

def read_mfa_words(textgrid_path: Path) -> list[tuple[str, float, float]]:
    """(word, start_s, end_s) of the non-empty intervals of the ``words`` tier."""
    from praatio import textgrid

    try:
        tg = textgrid.openTextgrid(str(textgrid_path), includeEmptyIntervals=False, reportingMode="silence")
    except Exception as e:  # praatio raises a variety of parse errors
        raise CorpusFormatError(f"{textgrid_path}: not a readable TextGrid ({e})") from e
    if "words" not in tg.tierNames:
        raise CorpusFormatError(f"{textgrid_path}: no 'words' tier (tiers: {list(tg.tierNames)})")
    words = [(e.label.strip(), float(e.start), float(e.end)) for e in tg.getTier("words").entries]
    return [w for w in words if w[0] and w[0] not in ("<eps>", "sil", "sp", "spn")]


def convert_librispeech_mfa(
    audio_root: str | Path, alignments_root: str | Path, output: str | Path,
    tasks: tuple[str, ...] = ("words_all",), split: str = "train", seed: int = 0,
    on_error: Literal["fail", "skip"] = "fail", rows_per_shard: int = 256,
) -> ConversionReport:
    """Every ``*.TextGrid`` under ``alignments_root``; its audio at the same relative path
    under ``audio_root`` (MFA mirrors the corpus tree), any of flac/wav/ogg."""
    audio_root, alignments_root = Path(audio_root), Path(alignments_root)
    grids = sorted(alignments_root.rglob("*.TextGrid"))
    if not grids:
        raise CorpusFormatError(f"{alignments_root}: no *.TextGrid files")
    report = ConversionReport()

    def rows() -> Iterator[dict[str, Any]]:
        for n, grid in enumerate(grids):
            rel = grid.relative_to(alignments_root)
            try:
                audio = _find_audio(audio_root / rel.parent, grid.stem)
                if audio is None:
                    raise CorpusFormatError(f"{grid}: no audio {rel.parent / grid.stem}.(flac|wav|ogg) under {audio_root}")
                words = read_mfa_words(grid)
                if not words:
                    raise CorpusFormatError(f"{grid}: no words in the 'words' tier")
                samples, sr = decode_audio(audio)
            except (CorpusFormatError, AudioError) as e:
                _handle(on_error, report, grid, e)
                continue
            transcript = " ".join(w for w, _, _ in words)
            meta = {"words": [[w, s, e] for w, s, e in words], "transcript": transcript, "audio_path": str(audio)}
            if "words_all" in tasks:
                times = [round(s, 4) for _, s, _ in words]
                target = json.dumps([round(t, 2) for t in times])
                yield _row(f"librispeech-{grid.stem}-all", "words_all", split, "librispeech_mfa", samples, sr,
                           alignment_prompt(transcript),
                           target, target, times, None, meta)
            if "words" in tasks:
                rng = np.random.default_rng([seed, n])
                i = int(rng.integers(len(words)))
                word, start, _ = words[i]
                k = sum(1 for w, _, _ in words[: i + 1] if w == word)
                yield _row(f"librispeech-{grid.stem}-w{i}", "words", split, "librispeech_mfa", samples, sr,
                           word_question(k, word),
                           json.dumps([{"word": word, "start": round(start, 2)}]), f"{start:.2f}",
                           [round(start, 4)], k, meta)

    params = {"converter": "librispeech_mfa", "audio_root": str(audio_root), "alignments_root": str(alignments_root),
              "tasks": list(tasks), "seed": seed}
    return _run(rows(), Path(output), params, report, rows_per_shard, on_error)


# ---------------------------------------------------------------- LibriCount

def read_libricount_onsets(json_path: Path) -> list[float]:
    """Each speaker's first activity start, sorted (seconds)."""
    try:
        speakers = json.loads(json_path.read_text())
    except ValueError as e:
        raise CorpusFormatError(f"{json_path}: not valid JSON ({e})") from e
    if not isinstance(speakers, list):
        raise CorpusFormatError(f"{json_path}: expected a list of speaker objects")
    onsets = []
    for i, spk in enumerate(speakers):
        activity = spk.get("activity") if isinstance(spk, dict) else None
        if not activity or not all(isinstance(a, (list, tuple)) and len(a) == 2 for a in activity):
            raise CorpusFormatError(f"{json_path}: speaker {i} has no 'activity' list of [start, end] pairs")
        onsets.append(min(float(a[0]) for a in activity))
    return sorted(onsets)


def convert_libricount(
    root: str | Path, output: str | Path, split: str = "test", seed: int = 0,
    on_error: Literal["fail", "skip"] = "fail", rows_per_shard: int = 256,
) -> ConversionReport:
    """Every ``*.json`` under ``root`` with audio of the same stem beside it. Files with
    zero speakers have no onset to ask about: they are skipped and listed as such."""
    root = Path(root)
    labels = sorted(root.rglob("*.json"))
    if not labels:
        raise CorpusFormatError(f"{root}: no LibriCount *.json label files")
    report = ConversionReport()

    def rows() -> Iterator[dict[str, Any]]:
        for n, label in enumerate(labels):
            try:
                audio = _find_audio(label.parent, label.stem)
                if audio is None:
                    raise CorpusFormatError(f"{label}: no audio {label.stem}.(wav|flac|ogg) beside it")
                onsets = read_libricount_onsets(label)
                samples, sr = decode_audio(audio)
            except (CorpusFormatError, AudioError) as e:
                _handle(on_error, report, label, e)
                continue
            if not onsets:
                report.skipped.append({"input": str(label), "reason": "no_speakers",
                                       "detail": "0 speakers: no onset to ask about"})
                continue
            onsets = [min(t, samples.size / sr) for t in onsets]
            k = int(np.random.default_rng([seed, n]).integers(1, len(onsets) + 1))
            t = onsets[k - 1]
            yield _row(f"libricount-{label.stem}", "speakers", split, "libricount", samples, sr,
                       speaker_question(k),
                       json.dumps([{"speaker": k, "start": round(t, 2)}]), f"{t:.2f}", [round(t, 4)], k,
                       {"num_speakers": len(onsets), "onsets_s": onsets, "audio_path": str(audio)})

    return _run(rows(), Path(output), {"converter": "libricount", "root": str(root), "seed": seed}, report,
                rows_per_shard, on_error)


# ---------------------------------------------------------------- AudioSet strong labels

_TSV_COLUMNS = ("segment_id", "start_time_seconds", "end_time_seconds", "label")


def read_audioset_strong(tsv_path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """segment id -> sorted [(onset_s, offset_s, label)]."""
    segments: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    with open(tsv_path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in _TSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusFormatError(f"{tsv_path}: missing column(s) {missing}; expected {list(_TSV_COLUMNS)}")
        for line_no, rec in enumerate(reader, start=2):
            try:
                onset, offset = float(rec["start_time_seconds"]), float(rec["end_time_seconds"])
            except (TypeError, ValueError):
                raise CorpusFormatError(f"{tsv_path} line {line_no}: times are not numbers: {rec}") from None
            if not (0 <= onset <= offset):
                raise CorpusFormatError(f"{tsv_path} line {line_no}: need 0 <= onset <= offset, got {onset}, {offset}")
            segments[rec["segment_id"]].append((onset, offset, rec["label"]))
    return {k: sorted(v) for k, v in segments.items()}


def read_label_names(csv_path: Path | None) -> dict[str, str]:
    """AudioSet class map CSV (``mid,display_name`` or ``index,mid,display_name``)."""
    if csv_path is None:
        return {}
    names = {}
    with open(csv_path, newline="") as f:
        for rec in csv.DictReader(f):
            if "mid" not in rec or "display_name" not in rec:
                raise CorpusFormatError(f"{csv_path}: needs 'mid' and 'display_name' columns")
            names[rec["mid"]] = rec["display_name"]
    return names


def convert_audioset_strong(
    tsv_path: str | Path, audio_dir: str | Path, output: str | Path, label_names_csv: str | Path | None = None,
    split: str = "train", seed: int = 0, on_error: Literal["fail", "skip"] = "fail", rows_per_shard: int = 256,
) -> ConversionReport:
    """One ``events`` item per segment: the k-th occurrence of one of its labels."""
    tsv_path, audio_dir = Path(tsv_path), Path(audio_dir)
    segments = read_audioset_strong(tsv_path)
    names = read_label_names(Path(label_names_csv) if label_names_csv else None)
    report = ConversionReport()

    def rows() -> Iterator[dict[str, Any]]:
        for n, (seg, events) in enumerate(sorted(segments.items())):
            try:
                audio = _find_audio(audio_dir, seg)
                if audio is None:
                    raise CorpusFormatError(f"{tsv_path}: segment {seg!r} has no audio {seg}.(flac|wav|ogg) in {audio_dir}")
                samples, sr = decode_audio(audio)
            except (CorpusFormatError, AudioError) as e:
                _handle(on_error, report, audio_dir / seg, e)
                continue
            duration = samples.size / sr
            events = [(min(on, duration), min(off, duration), names.get(lab, lab)) for on, off, lab in events]
            rng = np.random.default_rng([seed, n])
            i = int(rng.integers(len(events)))
            onset, _, label = events[i]
            k = sum(1 for _, _, lab in events[: i + 1] if lab == label)
            yield _row(f"audioset-{seg}-e{i}", "events", split, "audioset_strong", samples, sr,
                       event_question(k, label),
                       json.dumps([{"event": label, "start": round(onset, 2)}]), f"{onset:.2f}",
                       [round(onset, 4)], k,
                       {"events": [{"label": lab, "onset_s": on, "offset_s": off} for on, off, lab in events],
                        "audio_path": str(audio)})

    params = {"converter": "audioset_strong", "tsv": str(tsv_path), "audio_dir": str(audio_dir), "seed": seed}
    return _run(rows(), Path(output), params, report, rows_per_shard, on_error)


# ---------------------------------------------------------------- RTTM diarization references (AMI, VoxConverse)

def read_rttm_files(rttm: Path) -> dict[str, tuple[Path, list]]:
    """file id -> (the RTTM it came from, its speaker turns) over one RTTM file or every ``*.rttm``
    under a folder. A bad line fails naming file and line; a file id in two files is refused."""
    from framecall.formats import FormatError, read_rttm

    files = [rttm] if rttm.is_file() else sorted(rttm.rglob("*.rttm"))
    if not files:
        raise CorpusFormatError(f"{rttm}: no RTTM file (give an .rttm file or a folder holding *.rttm)")
    out: dict[str, tuple[Path, list]] = {}
    for path in files:
        try:
            turns = read_rttm(path)
        except FormatError as e:
            raise CorpusFormatError(str(e)) from None
        for file_id, file_turns in turns.items():
            if file_id in out:
                raise CorpusFormatError(f"{path}: file id {file_id!r} also appears in {out[file_id][0]}")
            out[file_id] = (path, file_turns)
    return out


def audio_index(audio_dir: Path) -> dict[str, Path]:
    """Every audio file under ``audio_dir`` by name without extension, and by the part before the first
    dot (AMI's ``ES2002a.Mix-Headset.wav`` is file id ``ES2002a``); an exact stem wins."""
    index: dict[str, Path] = {}
    paths = sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    for p in paths:
        index.setdefault(p.name.split(".")[0], p)
    for p in paths:
        index[p.stem] = p
    return index


def window_onsets(turns: list, start_s: float, end_s: float) -> list[tuple[str, float]]:
    """(speaker, onset relative to ``start_s``) of each speaker active in [start_s, end_s), sorted by
    onset: the first moment the speaker is heard in the window (0 for a turn running into it)."""
    first: dict[str, float] = {}
    for turn in turns:
        if turn.end > start_s and turn.start < end_s:
            onset = max(turn.start, start_s) - start_s
            first[turn.label] = min(onset, first.get(turn.label, onset))
    return sorted(first.items(), key=lambda kv: (kv[1], kv[0]))


def convert_rttm(
    rttm: str | Path, audio_dir: str | Path, output: str | Path, window_s: float | None = 30.0,
    split: str = "train", seed: int = 0, on_error: Literal["fail", "skip"] = "fail", rows_per_shard: int = 256,
) -> ConversionReport:
    """``speakers`` items from a diarization reference: RTTM turns + one recording per file id under
    ``audio_dir`` (any depth; ``<id>.wav`` or ``<id>.<anything>.wav``). Each recording is cut into
    ``window_s`` windows (None: whole), and each window with speech asks when its k-th speaker (by
    first activity in the window, LibriCount's definition) starts, k drawn per window."""
    rttm, audio_dir = Path(rttm), Path(audio_dir)
    if window_s is not None and window_s <= 0:
        raise ValueError(f"window_s must be > 0 or None, got {window_s}")
    references, audio = read_rttm_files(rttm), audio_index(audio_dir)
    report = ConversionReport()

    def rows() -> Iterator[dict[str, Any]]:
        for n, (file_id, (source, turns)) in enumerate(sorted(references.items())):
            try:
                if file_id not in audio:
                    raise CorpusFormatError(f"{source}: file id {file_id!r} has no audio {file_id}[.*].(flac|wav|ogg) "
                                            f"under {audio_dir}")
                samples, sr = decode_audio(audio[file_id])
            except (CorpusFormatError, AudioError) as e:
                _handle(on_error, report, source, e)
                continue
            yield from _rttm_windows(file_id, turns, audio[file_id], samples, sr, window_s, split, [seed, n])

    params = {"converter": "rttm", "rttm": str(rttm), "audio_dir": str(audio_dir), "window_s": window_s,
              "seed": seed}
    return _run(rows(), Path(output), params, report, rows_per_shard, on_error)


def _rttm_windows(file_id: str, turns: list, audio: Path, samples: np.ndarray, sr: int, window_s: float | None,
                  split: str, seed: list[int]) -> Iterator[dict[str, Any]]:
    """One ``speakers`` row per window of the recording that has speech."""
    duration = samples.size / sr
    width = duration if window_s is None else window_s
    rng = np.random.default_rng(seed)
    for w, start in enumerate(np.arange(0.0, duration, width)):
        end = min(float(start) + width, duration)
        onsets = window_onsets(turns, float(start), end)
        if not onsets or end - start < 0.5:  # a silent window has no onset; a sliver at the end is no clip
            continue
        k = int(rng.integers(1, len(onsets) + 1))
        t = round(onsets[k - 1][1], 4)
        clip = samples[int(round(start * sr)):int(round(end * sr))]
        item_id = file_id if window_s is None else f"{file_id}-w{w:04d}"
        meta = {"file_id": file_id, "audio_path": str(audio), "window_start_s": round(float(start), 4),
                "num_speakers": len(onsets), "speakers": [s for s, _ in onsets],
                "onsets_s": [round(o, 4) for _, o in onsets]}
        yield _row(f"rttm-{item_id}", "speakers", split, "rttm", clip, sr, speaker_question(k),
                   json.dumps([{"speaker": k, "start": round(t, 2)}]), f"{t:.2f}", [t], k, meta)
