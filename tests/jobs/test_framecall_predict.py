"""``framecall predict``: the console script runs jobs/predict.py's command line in-process."""

import json

import pytest

from framecall.client import main
from tests_helpers import make_checkpoint, speech_clip

QUESTION = "When does the 1st occurrence of the word 'cat' occur?"


@pytest.mark.slow
def test_framecall_predict_writes_results_and_exits_1_when_a_file_fails(ray_session, tmp_path):
    import soundfile as sf

    audio = tmp_path / "audio"
    audio.mkdir()
    for k in range(3):
        sf.write(audio / f"clip{k}.wav", speech_clip("the cat sat", seed=k)[0], 16000)
    (audio / "broken.wav").write_bytes(b"RIFF\x00\x00 not a wav")
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    argv = ["predict", "--checkpoint", str(ckpt), "--input", str(audio), "--output", str(tmp_path / "out"),
            "--question", QUESTION, "--batch-size", "2"]
    assert main(argv) == 1  # one file failed; the others are still written
    index = json.loads((tmp_path / "out" / "_index.json").read_text())
    assert (index["rows"], index["written"], index["failures"]) == (4, 3, {"undecodable": 1})
    assert str(audio / "broken.wav") in index["results"]["broken"]
    result = json.loads((tmp_path / "out" / "clip1.json").read_text())
    assert result["prompt"] == QUESTION and len(result["times_s"]) == len(result["confidences"]) == 1


def test_framecall_predict_prints_its_config_and_refuses_a_server_flag(tmp_path, capsys):
    assert main(["predict", "--checkpoint", "ckpt", "--input", "in/", "--output", "out/", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "checkpoint: ckpt" in printed and "input: in/" in printed
    with pytest.raises(SystemExit) as e:
        main(["--url", "http://127.0.0.1:1", "predict"])
    assert e.value.code == 2
    assert "predict runs in this process" in capsys.readouterr().err
