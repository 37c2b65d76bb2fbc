"""Convert a real corpus into framecall shards.

    python jobs/convert_corpus.py librispeech --audio-root LibriSpeech/dev-clean \
        --alignments-root mfa_out/dev-clean --output data/ls_dev --tasks words_all,words
    python jobs/convert_corpus.py libricount --root LibriCount10-0dB --output data/libricount
    python jobs/convert_corpus.py audioset --tsv audioset_eval_strong.tsv --audio-dir seg_audio \
        --label-names mid_to_display_name.csv --output data/audioset_eval
    python jobs/convert_corpus.py rttm --rttm voxconverse/dev --audio-dir voxconverse_audio/dev \
        --output data/voxconverse_dev --window-s 30        # AMI: --rttm ami/only_words/rttms/dev --audio-dir amicorpus

RTTM: ``SPEAKER`` turns of each file id, its recording ``<id>.wav`` (or ``<id>.<any>.wav``, e.g. AMI's
``ES2002a.Mix-Headset.wav``) anywhere under --audio-dir; one ``speakers`` item per --window-s window
with speech (0: the whole recording). A bad RTTM line fails naming its file and line.

``--on-error skip`` skips unreadable inputs and lists each one in the manifest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.data import converters  # noqa: E402
from framecall.data.stats import format_stats, shard_stats  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="corpus", required=True)
    ls = sub.add_parser("librispeech")
    ls.add_argument("--audio-root", required=True)
    ls.add_argument("--alignments-root", required=True)
    ls.add_argument("--tasks", default="words_all")
    lc = sub.add_parser("libricount")
    lc.add_argument("--root", required=True)
    a = sub.add_parser("audioset")
    a.add_argument("--tsv", required=True)
    a.add_argument("--audio-dir", required=True)
    a.add_argument("--label-names")
    r = sub.add_parser("rttm")
    r.add_argument("--rttm", required=True, help="an RTTM file, or a folder of *.rttm")
    r.add_argument("--audio-dir", required=True)
    r.add_argument("--window-s", type=float, default=30.0, help="seconds per item (0: the whole recording)")
    for s in (ls, lc, a, r):
        s.add_argument("--output", required=True)
        s.add_argument("--split", default="train")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    args = p.parse_args(argv)
    common = {"split": args.split, "seed": args.seed, "on_error": args.on_error}
    if args.corpus == "librispeech":
        report = converters.convert_librispeech_mfa(args.audio_root, args.alignments_root, args.output,
                                                    tasks=tuple(args.tasks.split(",")), **common)
    elif args.corpus == "rttm":
        report = converters.convert_rttm(args.rttm, args.audio_dir, args.output, args.window_s or None, **common)
    elif args.corpus == "libricount":
        report = converters.convert_libricount(args.root, args.output, **common)
    else:
        report = converters.convert_audioset_strong(args.tsv, args.audio_dir, args.output, args.label_names, **common)
    print(f"wrote {report.written} items; skipped {len(report.skipped)}")
    for s in report.skipped:
        print(f"  skipped {s['input']}: {s['reason']}: {s['detail']}")
    print(format_stats(shard_stats(args.output)))


if __name__ == "__main__":
    main()
