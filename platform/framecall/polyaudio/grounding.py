"""Frame-level grounding across clips (issue #21 item 4): PolyAudio's temporal-grounding and counting
items answered by a frame head instead of in text.

The frame model hears the item's clips joined in time, as PolyAudio's shards carry them (``audio``: the
clips with ``GAP_S`` of silence between them; ``meta.clip_offsets_s``: where each clip starts), and is
trained on the item's own question:

- ``clip_grounding`` ("In which audio, and when, does the 'X' start?"): one event, the asked onset in
  the joined audio. Answer: the clip holding the decoded time (the nearest one when it falls in a
  gap) and the time from that clip's start.
- ``clip_counting`` ("How many 'X' across all audios?"): every onset of the asked label in the joined
  audio (none is a valid answer). Answer: the Poisson head's expected count ``Lam(T)``, rounded.

:func:`frame_row` turns a PolyAudio row into a frame shard row; :func:`score_frame_answers` scores a
frame checkpoint on converted rows per clip count (2-5), in the layout :func:`grounding_table` prints.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

FRAME_TASKS = {"temporal_grounding": "clip_grounding", "counting": "clip_counting"}
"""PolyAudio generator -> the frame task it becomes."""
TIME_TOLERANCES_S = (0.1, 0.5)
"""Grounding: right clip and onset within these (0.5 s = the rule judge's full score)."""


def frame_row(row: dict[str, Any], split: str | None = None) -> dict[str, Any]:
    """A PolyAudio shard row (``poly_temporal_grounding`` / ``poly_counting``) -> a single-audio frame
    row over the joined clips (``clips`` emptied, ``event_times_s`` in the joined audio)."""
    meta = json.loads(row["meta"])
    name = meta["task"]
    if name not in FRAME_TASKS:
        raise ValueError(f"row {row['id']!r}: PolyAudio task {name!r} has no frame form; valid: {list(FRAME_TASKS)}")
    if name == "temporal_grounding":
        times = [float(t) for t in row["event_times_s"]]  # the asked onset, already in the joined audio
    else:
        label = meta["evidence"]["label"]
        times = sorted(round(offset + t, 4) for offset, clip in zip(meta["clip_offsets_s"], row["clips"])
                       for t, lab in zip(clip["event_times_s"], clip["labels"]) if lab == label)
    meta["clip_durations_s"] = [float(c["duration_s"]) for c in row["clips"]]  # the clips go; their extent stays
    return {**row, "task": FRAME_TASKS[name], "split": split or row["split"], "event_times_s": times,
            "num_events": len(times), "query_index": None, "clips": [], "meta": json.dumps(meta)}


def convert(train_dir: str | Path, output: str | Path, test_dir: str | Path | None = None,
            val_every: int = 10) -> Path:
    """Every temporal-grounding and counting row as frame shards in ``output``: those of ``train_dir``
    as ``train`` (every ``val_every``-th one as ``val``), those of ``test_dir`` (e.g. the bench) as ``test``."""
    from framecall.data.shards import ShardWriter, list_shards, read_shard

    kept: dict[str, int] = defaultdict(int)
    sources = [(train_dir, False)] + ([(test_dir, True)] if test_dir else [])
    params = {"made_by": "polyaudio.grounding.convert", "train": str(train_dir), "test": str(test_dir or "")}
    with ShardWriter(output, params=params) as writer:
        for poly_dir, as_test in sources:
            for path in list_shards(poly_dir):
                for row in read_shard(path).to_pylist():
                    if json.loads(row["meta"])["task"] not in FRAME_TASKS:
                        continue
                    n = kept[str(poly_dir)]
                    split = "test" if as_test else ("val" if n % val_every == val_every - 1 else "train")
                    writer.write(frame_row(row, split))
                    kept[str(poly_dir)] += 1
            if not kept[str(poly_dir)]:
                raise ValueError(f"{poly_dir}: no temporal_grounding or counting rows to convert")
    return Path(output)


def clip_and_time(t: float, offsets: list[float], durations: list[float]) -> tuple[int, float]:
    """A time in the joined audio -> (1-based clip, seconds from its start): the clip holding it, or the
    nearest clip when it falls in a gap (clamped into that clip)."""
    def distance(k: int) -> float:
        return max(offsets[k] - t, t - (offsets[k] + durations[k]), 0.0)

    k = min(range(len(offsets)), key=distance)
    return k + 1, min(max(t - offsets[k], 0.0), durations[k])


def answer_item(engine, row: dict[str, Any], max_events: int = 20) -> dict[str, Any]:
    """One converted row -> its frame answer and whether it is right (a FrameLocalizer ``engine``)."""
    from framecall.audio.io import decode_audio
    from framecall.inference import Query

    meta = json.loads(row["meta"])
    samples, _ = decode_audio(row["audio"], source=row["id"])
    out = {"id": row["id"], "task": row["task"], "clips": meta["num_clips"]}
    if row["task"] == "clip_grounding":
        result = engine.predict([Query(samples, row["prompt"], num_events=1)])[0]
        clip, time = clip_and_time(result["times_s"][0], meta["clip_offsets_s"], meta["clip_durations_s"])
        want = meta["answer"]
        out.update(pred={"index": clip, "time": round(time, 3)}, gold=want, clip_right=clip == want["index"])
        for tol in TIME_TOLERANCES_S:
            out[f"within_{tol:g}s"] = clip == want["index"] and abs(time - want["time"]) <= tol
    else:
        result = engine.predict([Query(samples, row["prompt"], max_events=max_events)])[0]
        count, want = int(round(result["count_estimate"])), int(meta["answer"]["value"])
        out.update(pred=count, gold=want, exact=count == want, within_1=abs(count - want) <= 1)
    return out


def score_frame_answers(checkpoint: str | Path, data_dir: str | Path, split: str = "test",
                        limit: int | None = None) -> list[dict[str, Any]]:
    """Every converted row of ``split`` answered by the frame checkpoint -> one record per row."""
    from framecall.data.shards import list_shards, read_shard
    from framecall.inference import FrameLocalizer

    engine = FrameLocalizer.from_pretrained(checkpoint)
    rows = [r for p in list_shards(data_dir) for r in read_shard(p).to_pylist() if r["split"] == split]
    if not rows:
        raise ValueError(f"{data_dir}: no rows in split {split!r}")
    return [answer_item(engine, row) for row in rows[:limit]]


def from_rule_verdicts(records: Iterable[dict[str, Any]], clips_by_id: dict[str, int]) -> list[dict[str, Any]]:
    """A text model's PolyAudio records (``score_rule`` of :class:`~framecall.polyaudio.judges.RuleJudge`)
    in the measures of :func:`answer_item`: clip_time 5 = clip + onset within 0.5 s, >= 3 = right clip;
    number 5 = exact, >= 2 = within 1. Other tasks are left out."""
    out = []
    for r in records:
        score, base = r["score_rule"], {"id": r["id"], "clips": clips_by_id[r["id"]]}
        if r["task"] == "temporal_grounding":
            out.append({**base, "task": "clip_grounding", "clip_right": score >= 3, "within_0.5s": score == 5})
        elif r["task"] == "counting":
            out.append({**base, "task": "clip_counting", "exact": score == 5, "within_1": score >= 2})
    return out


def accuracy_by_clips(records: Iterable[dict[str, Any]], key: str) -> dict[int, tuple[float, int]]:
    """{clip count: (fraction of records with ``record[key]`` true, records)} over the records having ``key``."""
    hits: dict[int, list[bool]] = defaultdict(list)
    for r in records:
        if key in r:
            hits[int(r["clips"])].append(bool(r[key]))
    return {n: (sum(v) / len(v), len(v)) for n, v in sorted(hits.items())}


def grounding_table(rows: dict[str, tuple[list[dict[str, Any]], str]]) -> str:
    """Markdown: one line per (model, measure), one column per clip count (2-5) and all.
    ``rows``: label -> (records, key of the boolean measured)."""
    counts = sorted({int(r["clips"]) for records, _ in rows.values() for r in records})
    lines = ["| model / measure | " + " | ".join(f"{n} clips" for n in counts) + " | all |",
             "|---|" + "---:|" * (len(counts) + 1)]
    for label, (records, key) in rows.items():
        by = accuracy_by_clips(records, key)
        total = [bool(r[key]) for r in records if key in r]
        cells = [f"{100 * by[n][0]:.0f} ({by[n][1]})" if n in by else "-" for n in counts]
        cells.append(f"{100 * sum(total) / len(total):.1f} ({len(total)})" if total else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``convert`` PolyAudio splits into frame shards; ``score`` a frame checkpoint on their test split."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="PolyAudio train (+ bench) shards -> frame shards")
    c.add_argument("--train", required=True, help="PolyAudio shard directory -> train/val rows")
    c.add_argument("--bench", help="PolyAudio shard directory -> test rows")
    c.add_argument("--output", required=True)
    s = sub.add_parser("score", help="a frame checkpoint's answers per clip count")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True, help="converted frame shards")
    s.add_argument("--split", default="test")
    s.add_argument("--output-json")
    args = p.parse_args(argv)
    if args.command == "convert":
        out = convert(args.train, args.output, test_dir=args.bench)
        print(json.loads((out / "_manifest.json").read_text())["counts"])
        return
    records = score_frame_answers(args.checkpoint, args.data, args.split)
    print(grounding_table({"right clip": (records, "clip_right"), "clip + onset within 0.1 s": (records, "within_0.1s"),
                           "clip + onset within 0.5 s": (records, "within_0.5s"), "exact count": (records, "exact"),
                           "count within 1": (records, "within_1")}))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(records, indent=1))
