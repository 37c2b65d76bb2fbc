"""Bounded audio decode: time and peak traced memory of refusing hostile files vs decoding a good one.

    python benchmarks/bench_audio_decode.py

Files are built in memory: a 30 s FLAC tone, 10 minutes of FLAC silence (~28 KB; 38 MB as float32)
with an honest header and with its STREAMINFO length set to 0 ("unknown"), and a 132-byte FLAC whose
header claims 2^36 samples. Each is decoded 3 times with ``framecall.audio.io.decode_audio``; the table
gives the best time and the peak memory tracemalloc saw (numpy's buffers are traced).
"""

from __future__ import annotations

import io
import time
import tracemalloc

import numpy as np
import soundfile as sf

from framecall.audio.io import AudioError, decode_audio


def flac(x: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def with_total(data: bytes, frames: int) -> bytes:
    """Rewrite STREAMINFO's 36-bit total-samples field (0 = unknown length)."""
    d = bytearray(data)
    word = int.from_bytes(d[18:26], "big")
    d[18:26] = ((word & ~((1 << 36) - 1)) | frames).to_bytes(8, "big")
    return bytes(d)


def run(name: str, data: bytes, **kwargs) -> str:
    best, peak, outcome = float("inf"), 0, ""
    for _ in range(3):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            decode_audio(data, source=name, **kwargs)
            outcome = "decoded"
        except AudioError as e:
            outcome = f"refused ({type(e).__name__})"
        best = min(best, time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return f"| {name} | {len(data):,} | {outcome} | {best * 1000:.1f} | {peak / 2**20:.2f} |"


def main() -> None:
    silence = flac(np.zeros(16000 * 600, np.int16))
    tone = flac((0.3 * np.sin(np.arange(16000 * 30) / 7)).astype(np.float32))
    rows = [
        run("30 s FLAC tone (good), max_seconds 600", tone, max_seconds=600),
        run("10 min FLAC silence, honest header, max_seconds 30", silence, max_seconds=30),
        run("10 min FLAC silence, length unknown, max_seconds 30", with_total(silence, 0), max_seconds=30),
        run("FLAC header claiming 2^36 samples, max_seconds 600", with_total(tone, (1 << 36) - 1)[:132],
            max_seconds=600),
        run("10 min FLAC silence, length unknown, default limit (3600 s)", with_total(silence, 0)),
    ]
    print("| file | bytes | result | best of 3, ms | peak traced MiB |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
