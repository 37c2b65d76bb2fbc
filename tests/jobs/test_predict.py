"""jobs/predict.py: Ray Data actor pool, one result per input, bad rows named or counted."""

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from framecall.data.shards import list_shards
from tests_helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _job():
    spec = importlib.util.spec_from_file_location("predict_job", ROOT / "jobs" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_predict_job_writes_one_result_per_row(ray_session, tiny_words_all, tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words_all"])
    ids = pq.read_table(list_shards(tiny_words_all), columns=["id"]).column("id").to_pylist()
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tiny_words_all), "--output",
                           str(tmp_path / "json"), "--actors", "2", "--batch-size", "4"])
    assert summary["rows"] == summary["written"] == len(ids) == 24
    first = json.loads((tmp_path / "json" / f"{ids[0]}.json").read_text())
    assert first["id"] == ids[0] and len(first["times_s"]) == first["num_events"] > 0
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tiny_words_all), "--output",
                           str(tmp_path / "ctm"), "--format", "ctm"])
    assert summary["written"] == 24
    table = pq.read_table(list_shards(tiny_words_all), columns=["id", "meta"]).to_pylist()
    meta_words = json.loads(table[0]["meta"])["transcript"].split()
    ctm = (tmp_path / "ctm" / f"{table[0]['id']}.ctm").read_text().splitlines()
    assert [line.split()[4] for line in ctm] == meta_words  # utt chan start dur word conf
    assert all(0.0 <= float(line.split()[5]) <= 1.0 for line in ctm)
    assert all(line.startswith(table[0]["id"] + " 1 ") for line in ctm)


@pytest.mark.slow
def test_predict_bad_rows_fail_naming_the_row_or_are_counted(ray_session, tmp_path):
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    rows = list(generate(SynthConfig(task="words", num=3, seed=9, max_seconds=2.0)))
    rows[1]["audio"] = b"not flac at all"
    with ShardWriter(tmp_path / "data") as w:
        w.write_all(rows)
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    with pytest.raises(Exception, match=rf"id={rows[1]['id']}.*cannot decode audio"):
        _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "o1")])
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output",
                           str(tmp_path / "o2"), "--bad-rows", "skip"])
    assert (summary["rows"], summary["written"], summary["skipped"]) == (3, 2, 1)
    assert summary["results"][rows[1]["id"]].startswith("skipped: ")


@pytest.mark.parametrize("row_id", ["../escape", "a/b", "/abs", "..", ".", "", "a\\b", "nul\x00", " x", "_index",
                                    "x" * 201])
def test_row_ids_that_are_not_plain_file_names_are_refused(row_id, tmp_path):
    from framecall.batch_predict import PredictError, output_name

    with pytest.raises(PredictError, match="not usable as a result file name"):
        output_name(row_id, ".json")
    assert output_name("spk1-utt_00.7", ".json") == "spk1-utt_00.7.json"


@pytest.mark.slow
def test_path_like_ids_write_nothing_outside_the_output(ray_session, tmp_path):
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    rows = list(generate(SynthConfig(task="words", num=2, seed=4, max_seconds=2.0)))
    rows[0]["id"] = "../../escaped"
    with ShardWriter(tmp_path / "data") as w:
        w.write_all(rows)
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    out = tmp_path / "deep" / "out"
    with pytest.raises(Exception, match=r"id='\.\./\.\./escaped': not usable as a result file name"):
        _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output", str(out)])
    summary = _job().main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--output", str(out),
                           "--bad-rows", "skip"])
    assert (summary["written"], summary["skipped"]) == (1, 1)
    assert not list(tmp_path.rglob("escaped*"))


QUESTION = "When does the 1st occurrence of the word 'cat' occur?"


def _tone(seconds, seed):
    import numpy as np

    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 20 * seed) * t)).astype("float32")


@pytest.mark.slow
def test_predict_folder_of_20_wavs_reports_corrupt_and_empty_files_by_name(ray_session, tmp_path):
    import soundfile as sf

    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    for k in range(20):
        sf.write(audio / ("sub" if k % 5 == 0 else ".") / f"clip{k:02d}.wav", _tone(1.0 + k % 3 * 0.5, k), 16000)
    (audio / "broken.wav").write_bytes(b"RIFF\x00\x00junk, not a wav file")
    (audio / "silent.flac").write_bytes(b"")
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    out = tmp_path / "out"
    argv = ["--checkpoint", str(ckpt), "--input", str(audio), "--output", str(out), "--question", QUESTION,
            "--actors", "2", "--batch-size", "4"]
    assert _job().cli(argv) == 1  # some rows failed: a non-zero exit, the rest written
    index = json.loads((out / "_index.json").read_text())
    assert (index["rows"], index["written"], index["skipped"]) == (22, 20, 2)
    assert index["failures"] == {"empty": 1, "undecodable": 1}
    assert str(audio / "broken.wav") in index["results"]["broken"]
    assert str(audio / "silent.flac") in index["results"]["silent"]
    first = json.loads((out / "sub__clip00.json").read_text())
    assert first["prompt"] == QUESTION and len(first["times_s"]) == first["num_events"] == 1
    assert len(list(out.glob("*.json"))) == 21  # 20 results + the index


@pytest.mark.slow
def test_predict_lhotse_manifest_aligns_each_cut_segment(ray_session, tmp_path):
    import soundfile as sf
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    def cut(rec, name, start, duration, text):  # one cut per utterance, as trim_to_supervisions makes
        sup = SupervisionSegment(name, rec.id, 0.0, duration, channel=0, text=text)
        return MonoCut(name, start, duration, 0, recording=rec, supervisions=[sup])

    cuts = []
    for k in range(3):
        sf.write(tmp_path / f"rec{k}.flac", _tone(4.0, k), 16000)
        rec = Recording.from_file(tmp_path / f"rec{k}.flac", recording_id=f"rec{k}")
        cuts += [cut(rec, f"rec{k}-a", 0.5, 1.5, "the cat sat"), cut(rec, f"rec{k}-b", 2.0, 1.8, "on the mat now")]
        if k == 0:
            cuts.append(cut(rec, "rec0-late", 9.0, 1.0, "past the end"))  # a cut beyond its recording
    cuts = CutSet.from_cuts(cuts)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words_all"])
    summary = _job().main(["--checkpoint", str(ckpt), "--input", str(tmp_path / "cuts.jsonl.gz"), "--output",
                           str(tmp_path / "ctm"), "--format", "ctm"])
    assert (summary["rows"], summary["written"], summary["failures"]) == (7, 6, {"empty": 1})
    late = summary["results"]["rec0-late"]
    assert "rec0.flac" in late and "after the recording's end (4.000 s)" in late
    lines = (tmp_path / "ctm" / "rec1-b.ctm").read_text().splitlines()
    assert [line.split()[4] for line in lines] == ["on", "the", "mat", "now"]
    assert all(0.0 <= float(line.split()[2]) <= 1.8 for line in lines)  # times within the 1.8 s segment


def test_unknown_input_format_is_refused_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _job().main(["--checkpoint", "ckpt", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--input-format", "wavs"])
    assert e.value.code == 2
    assert "unknown input format 'wavs'; valid: ['auto', 'audio-dir', 'list', 'lhotse', 'hf', 'shards']" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit, match=r"--input: .*: no audio files"):  # an empty folder: nothing to detect
        _job().main(["--checkpoint", "ckpt", "--input", str(tmp_path), "--output", str(tmp_path / "o")])


def _hour_flac(path, seconds=3600, rate=16000):
    """A one-hour FLAC made cheaply: one 10 s tone block written over and over."""
    import soundfile as sf

    block = _tone(10.0, 1)
    with sf.SoundFile(path, "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds // 10):
            f.write(block)
    return path


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms in a thread (torch's
    allocations are invisible to tracemalloc; RSS sees numpy and torch alike)."""

    def __enter__(self):
        import threading

        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.growth_mb = (self.peak - self.base) / 2**20


def _predict_file(actor, path):
    """Run the actor on one audio file as jobs/predict.py does -> (its result, peak RSS growth in MiB)."""
    import numpy as np

    from framecall.batch_predict import items_table
    from framecall.data.inputs import read_inputs

    batch = {k: np.array(v, dtype=object) for k, v in items_table(read_inputs(path, "auto", QUESTION)).to_pydict()
             .items()}
    with _PeakRSS() as mem:
        out = actor(batch)
    assert out["status"] == ["ok"], out
    return json.loads(Path(out["file"][0]).read_text()), mem.growth_mb


@pytest.mark.slow
def test_one_hour_flac_is_predicted_in_bounded_memory(tmp_path):
    """A long file is streamed (AudioWindows: read, mixed down, resampled window by window), forwarded
    batch_size 30 s windows at a time, the small curves stitched: peak memory does not grow with the
    recording. Measured as peak RSS growth of the actor's call on a 10-minute and a 60-minute FLAC
    (after a 40 s warm-up, so one-off allocations count in neither): the hour's is within 1.3x the ten
    minutes' + 32 MiB, and under half of the hour's 16 kHz float32 samples (220 MiB); before streaming
    it was 678 MiB, 3.1x (BENCHMARKS.md)."""
    from framecall.batch_predict import PredictActor, PredictConfig
    from framecall.config import to_dict

    cfg = PredictConfig(checkpoint=str(make_checkpoint(tmp_path / "ckpt", ["words"])), output=str(tmp_path / "o"),
                        batch_size=4, max_audio_seconds=3700.0)
    (tmp_path / "o").mkdir()
    actor = PredictActor(to_dict(cfg))
    _predict_file(actor, _hour_flac(tmp_path / "warm.flac", seconds=40))
    ten, ten_mb = _predict_file(actor, _hour_flac(tmp_path / "ten.flac", seconds=600))
    hour, hour_mb = _predict_file(actor, _hour_flac(tmp_path / "hour.flac"))
    assert ten["chunks"] == 23 and hour["chunks"] == 139  # ceil((T - 30) / 26) + 1 windows
    assert 0 <= hour["times_s"][0] <= 3600
    audio_mb = 3600 * 16000 * 4 / 2**20
    print(f"peak RSS growth: 10 min {ten_mb:.0f} MiB, 60 min {hour_mb:.0f} MiB (the hour's audio {audio_mb:.0f} MiB)")
    assert hour_mb < 1.3 * ten_mb + 32 and hour_mb < 0.5 * audio_mb
