"""data.featurize=worker: Ray Data ships waveforms, the collator featurizes the batch; the same batches as
the features-in-pipeline mode (issue #19)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from framecall.audio import augment
from framecall.audio.augment import AugmentConfig, SpecAugmentConfig, spec_augment
from framecall.data.collate import FrameCollator
from framecall.data.pipeline import (
    WAVEFORM_SCHEMA, BadRowError, PipelineConfig, build_dataset, featurize_batch, iterate_rows_locally,
    waveforms_from_bytes,
)
from framecall.data.shards import ShardWriter, list_shards
from framecall.data.synthetic import SynthConfig, generate

LABELS = ("token_mask", "feature_mask", "event_counts", "subframe_mask", "num_events")


def _collated(data_dir, cfg: PipelineConfig) -> list[dict]:
    return [FrameCollator()(t.to_pydict()) for t in iterate_rows_locally(data_dir, cfg)]


def assert_same_batch(a: dict, b: dict) -> None:
    """Features within 1e-5, labels, masks and python fields identical."""
    assert a["features"].shape == b["features"].shape
    torch.testing.assert_close(a["features"], b["features"], atol=1e-5, rtol=0)
    for k in LABELS:
        assert torch.equal(a[k], b[k]), k
    for k in ("ids", "prompts", "target_texts", "event_times_s"):
        assert a[k] == b[k], k


def test_one_batch_collates_the_same_in_both_modes(words_all_dir):
    pipeline = _collated(words_all_dir, PipelineConfig())
    worker = _collated(words_all_dir, PipelineConfig(featurize="worker"))
    assert len(pipeline) == len(worker) >= 3
    lengths = pipeline[0]["feature_mask"].sum(1)
    assert len(pipeline[0]["ids"]) > 8 and lengths.min() < lengths.max()  # mixed lengths, > one CPU group
    for a, b in zip(pipeline, worker):
        assert_same_batch(a, b)
        # SpecAugment runs on the collated features: the same draws mask the same cells in both modes
        spec = SpecAugmentConfig(freq_masks=2, time_masks=2)
        torch.testing.assert_close(spec_augment(a["features"], a["feature_mask"], spec, torch.Generator().manual_seed(5)),
                                   spec_augment(b["features"], b["feature_mask"], spec, torch.Generator().manual_seed(5)),
                                   atol=1e-5, rtol=0)


def test_waveform_augmentation_gives_the_same_batch_in_both_modes(words_all_dir):
    aug = AugmentConfig(speed=(0.8, 1.25), noise_snr_db=(10.0, 20.0), probability=1.0, seed=3)
    batches = {}
    for mode in ("pipeline", "worker"):
        augment._PASSES.clear()  # both modes draw each row's first pass
        batches[mode] = _collated(words_all_dir, PipelineConfig(augment=aug, featurize=mode))
    plain = _collated(words_all_dir, PipelineConfig())
    assert plain[0]["event_times_s"] != batches["worker"][0]["event_times_s"]  # the speed change moved events
    for a, b in zip(batches["pipeline"], batches["worker"]):
        assert_same_batch(a, b)


@pytest.fixture(scope="module")
def multi_clip_dir(tmp_path_factory):
    """Two multi-clip rows (3 and 2 clips) among single-clip rows."""
    out = tmp_path_factory.mktemp("multi_clip")
    rows = list(generate(SynthConfig(task="words_all", num=12, seed=4, max_seconds=3.0, splits={"train": 1.0})))
    for n, item in zip((3, 2), rows[:2]):
        item["clips"] = [{"audio": r["audio"], "sample_rate": 16000, "duration_s": r["duration_s"],
                          "event_times_s": r["event_times_s"], "labels": ["x"], "speaker": None} for r in rows[-n:]]
    with ShardWriter(out, rows_per_shard=12) as w:
        w.write_all(rows)
    return out


def test_multi_clip_rows_join_their_clips_in_both_modes(multi_clip_dir):
    (pipeline,) = _collated(multi_clip_dir, PipelineConfig())
    (worker,) = _collated(multi_clip_dir, PipelineConfig(featurize="worker"))
    assert_same_batch(pipeline, worker)
    (table,) = iterate_rows_locally(multi_clip_dir, PipelineConfig(featurize="worker"))
    assert table.schema == WAVEFORM_SCHEMA
    row = table.to_pylist()[0]
    clips = waveforms_from_bytes(row["waveform"], row["clip_samples"])
    assert [c.size for c in clips] == row["clip_samples"] and len(clips) == 3


def test_ray_data_streams_waveforms_the_collator_featurizes(ray_session, words_all_dir):
    by_id = {}
    for batch in build_dataset(words_all_dir, split="train").dataset.iter_torch_batches(
            batch_size=8, collate_fn=FrameCollator()):
        by_id.update({i: (batch["features"][b], batch["event_counts"][b]) for b, i in enumerate(batch["ids"])})
    seen = 0
    sd = build_dataset(words_all_dir, PipelineConfig(featurize="worker"), split="train")
    for batch in sd.dataset.iter_torch_batches(batch_size=8, collate_fn=FrameCollator()):
        for b, i in enumerate(batch["ids"]):
            feats, counts = by_id[i]
            n = int(batch["feature_mask"][b].sum())
            torch.testing.assert_close(batch["features"][b, :, :n], feats[:, :n], atol=1e-5, rtol=0)
            assert torch.equal(batch["event_counts"][b][: counts.numel()].nonzero(), counts.nonzero())
            seen += 1
    assert seen == len(by_id) > 0


def test_worker_mode_names_a_bad_row_and_the_bad_setting(words_all_dir):
    path = list_shards(words_all_dir)[0]
    table = pq.read_table(path).slice(0, 3)
    rows = table.to_pylist()
    rows[1]["audio"] = rows[1]["audio"][:200]  # truncated flac
    table = pa.Table.from_pylist(rows, schema=table.schema).append_column("path", pa.array([str(path)] * 3))
    with pytest.raises(BadRowError, match=f"id={rows[1]['id']!r}.*cannot decode"):
        featurize_batch(table, PipelineConfig(featurize="worker"))
    kept = featurize_batch(table, PipelineConfig(featurize="worker", bad_rows="skip"))
    assert kept["id"].to_pylist() == [rows[0]["id"], rows[2]["id"]]
    with pytest.raises(ValueError, match="PipelineConfig.featurize.*'gpu'"):
        PipelineConfig(featurize="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip_samples sum to 5"):
        waveforms_from_bytes(np.zeros(4, np.float32).tobytes(), [5])


def test_the_training_config_names_a_bad_featurize_mode():
    from framecall.train.config import DataSection

    assert DataSection(featurize="worker").featurize == "worker"
    with pytest.raises(ValueError, match="data.featurize must be 'pipeline' or 'worker', got 'gpu'"):
        DataSection(featurize="gpu")
