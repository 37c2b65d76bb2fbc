"""MMAU-Pro's multi-audio subset from its public release, and an offline accuracy metric.

Release format (gamma-lab-umd/MMAU-Pro on the Hugging Face Hub, read here from a local
copy): a table (``test.parquet``, or JSON / JSON lines) with one row per instance:
``id``, ``audio_path`` (a path or a list of paths, relative to the release directory),
``question``, ``choices`` (list; empty for open-ended questions), ``answer``, ``category``,
``task_identifier``, ``perceptual_skills``, ``reasoning_skills``, ``sub-cat``. The
multi-audio subset is the rows with more than one audio path.

Metric: the official closed-form scorer matches the response to the choices with an
embedding model (NV-Embed), which cannot run offline here. :func:`choice_accuracy` is the
closest offline form, *labelled as such*: exact option letter or text, else the choice
with the largest word overlap. ``official_scorer`` is the hook for the real one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

METRIC_LABEL = "choice-matching accuracy (offline stand-in for MMAU-Pro's embedding-based matching)"


class MMAUProError(ValueError):
    """A release directory or row that does not have the MMAU-Pro layout; names the file/row."""


def _read_table(root: Path) -> list[dict[str, Any]]:
    for name in ("test.parquet", "data/test.parquet"):
        if (root / name).is_file():
            import pyarrow.parquet as pq

            return pq.read_table(root / name).to_pylist()
    for name in ("test.jsonl", "mmau_pro.jsonl"):
        if (root / name).is_file():
            return [json.loads(line) for line in (root / name).read_text().splitlines() if line.strip()]
    for name in ("test.json", "mmau_pro.json"):
        if (root / name).is_file():
            return json.loads((root / name).read_text())
    raise MMAUProError(f"{root}: no test.parquet, test.jsonl or test.json (MMAU-Pro release layout)")


def load_mmau_pro(root: str | Path, multi_audio_only: bool = True, check_audio: bool = True) -> list[dict[str, Any]]:
    """Rows as dicts with ``audio_paths`` (absolute) and ``choices`` normalised to lists."""
    root = Path(root)
    items = []
    for i, row in enumerate(_read_table(root)):
        where = f"{root} row {i} (id={row.get('id')})"
        for key in ("id", "audio_path", "question", "answer"):
            if key not in row:
                raise MMAUProError(f"{where}: missing field {key!r}")
        paths = row["audio_path"]
        paths = [paths] if isinstance(paths, str) else list(paths or [])
        if not paths:
            raise MMAUProError(f"{where}: field 'audio_path' is empty")
        if multi_audio_only and len(paths) < 2:
            continue
        resolved = [(root / p.lstrip("./")).resolve() if not Path(p).is_absolute() else Path(p) for p in paths]
        if check_audio:
            missing = [str(p) for p in resolved if not p.is_file()]
            if missing:
                raise MMAUProError(f"{where}: audio file(s) not found: {missing}")
        items.append({"id": str(row["id"]), "audio_paths": [str(p) for p in resolved], "question": row["question"],
                      "choices": list(row.get("choices") or []), "answer": str(row["answer"]),
                      "category": row.get("category"), "task_identifier": row.get("task_identifier")})
    return items


def prompt_with_choices(item: dict[str, Any]) -> str:
    if not item["choices"]:
        return item["question"]
    options = "\n".join(f"({chr(65 + k)}) {c}" for k, c in enumerate(item["choices"]))
    return f"{item['question']}\nChoices:\n{options}\nAnswer with the option."


def _words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def match_choice(response: str, choices: Sequence[str]) -> str | None:
    """The choice a free-text response picks: its letter "(B)", its exact text, or word overlap."""
    from framecall.polyaudio.judges import extract_answer

    text = extract_answer(response).strip()
    m = re.match(r"^\(?([A-Za-z])[\).:\s]|^\(?([A-Za-z])\)?$", text)
    if m:
        k = ord((m.group(1) or m.group(2)).upper()) - 65
        if 0 <= k < len(choices):
            return choices[k]
    for c in choices:
        if c.strip().lower() == text.lower():
            return c
    overlap = [(len(_words(c) & _words(text)), c) for c in choices]
    best = max(overlap, default=(0, None))
    return best[1] if best[0] > 0 else None


def choice_accuracy(items: Sequence[dict[str, Any]], responses: Sequence[str],
                    official_scorer: Callable[[dict[str, Any], str], bool] | None = None) -> dict[str, Any]:
    """Accuracy over the closed-form (multiple-choice) items; open-ended items are counted apart."""
    scorer = official_scorer or (lambda item, r: match_choice(r, item["choices"]) == item["answer"])
    closed = [(it, r) for it, r in zip(items, responses) if it["choices"]]
    correct = sum(bool(scorer(it, r)) for it, r in closed)
    return {"metric": "official" if official_scorer else METRIC_LABEL, "closed_items": len(closed),
            "open_items": len(items) - len(closed), "accuracy": correct / len(closed) if closed else float("nan")}
