"""Ray Serve on loopback, real HTTP: every endpoint, every bad input, batching, back-pressure."""

import base64
import concurrent.futures as cf
import tempfile
from pathlib import Path

import numpy as np
import pytest
import requests

from framecall.models.spec import qwen_audio_tokens
from tests_helpers import make_checkpoint, speech_clip, wav_bytes

pytestmark = pytest.mark.slow
Q = "When does the 1st occurrence of the word 'cat' occur?"


@pytest.fixture(scope="module")
def server(serve_url, tmp_path_factory):
    from ray import serve

    from framecall.serve_app import build_app

    root = tmp_path_factory.mktemp("serve_http")
    ckpt = make_checkpoint(root / "ckpt", ["words", "words_all"])
    common = {"checkpoint": str(ckpt), "allowed_roots": [str(root)], "max_audio_seconds": 12.0,
              "max_request_bytes": 3_000_000, "max_events": 40}
    serve.run(build_app({**common, "max_batch_size": 8, "batch_wait_timeout_s": 0.2}), name="main",
              route_prefix="/")
    key_file = root / "api_key"  # the key travels as a file the ingress reads, never in the app's config
    key_file.write_text("s3cret\n")
    key_file.chmod(0o600)
    serve.run(build_app({**common, "api_key_file": str(key_file), "max_batch_size": 1,
                         "max_ongoing_requests": 1, "max_queued_requests": 1}), name="strict", route_prefix="/strict")
    yield serve_url, ckpt
    serve.delete("main")
    serve.delete("strict")


@pytest.fixture(scope="module")
def clips():
    texts = ["the cat sat on the mat", "a cat and a dog", "my cat is here", "cat", "where is the big cat now",
             "the black cat", "one cat two cats", "cat cat cat"]
    return [wav_bytes(speech_clip(t, seed=i)[0]) for i, t in enumerate(texts)]


def _localize(url, audio, questions, **extra):
    body = {"audio_b64": base64.b64encode(audio).decode(), "questions": questions, **extra}
    return requests.post(f"{url}/v1/localize", json=body, timeout=60)


def test_health_model_and_openapi(server):
    url, _ = server
    r = requests.get(f"{url}/healthz", timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    health = r.json()
    assert health["status"] == "ok" and health["model"]["head"] == "poisson"
    assert health["model"]["name"] == "ckpt" and health["model"]["tasks"] == ["words", "words_all"]
    r = requests.get(f"{url}/openapi.json", timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    paths = r.json()["paths"]
    assert {"/v1/localize", "/v1/align", "/healthz"} <= set(paths)
    assert "multipart/form-data" in paths["/v1/localize"]["post"]["requestBody"]["content"]


def test_localize_json_and_multipart(server, clips):
    url, _ = server
    r = _localize(url, clips[0], [{"question": Q, "num_events": 2}, {"question": Q}], return_curve=True)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"]["version"] == "step-0"
    first, second = out["answers"]
    assert len(first["times_s"]) == 2 and first["task"] == "words"
    assert second["count_estimate"] > 0 and second["num_events"] == round(second["count_estimate"])
    # one value per 10 ms sub-frame of every 40 ms audio token
    assert len(first["curve"]["values"]) == 4 * qwen_audio_tokens(round(out["duration_s"] * 16000) // 160)
    assert first["curve"]["unit_s"] == 0.01
    multi = requests.post(f"{url}/v1/localize", files={"audio": ("a.wav", clips[0], "audio/wav")},
                          data={"questions": '[{"question": "%s", "num_events": 2}]' % Q.replace("'", "'")}, timeout=60)
    assert multi.status_code == 200, multi.text
    assert multi.json()["answers"][0]["times_s"] == first["times_s"]


def test_align_in_three_formats(server, clips):
    url, _ = server
    body = {"audio_b64": base64.b64encode(clips[0]).decode(), "transcript": "the cat sat on the mat"}
    words = requests.post(f"{url}/v1/align", json=body, timeout=60).json()["words"]
    assert [w["word"] for w in words] == "the cat sat on the mat".split()
    assert all(w["start"] <= w["end"] for w in words)
    # each end at the energy offset, never past the next start (FrameLocalizer.align's words)
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:]))
    assert all(0.0 <= w["confidence"] <= 1.0 for w in words)
    ctm = requests.post(f"{url}/v1/align", json={**body, "format": "ctm"}, timeout=60)
    assert ctm.status_code == 200 and len(ctm.text.splitlines()) == 6
    assert ctm.headers["X-Framecall-Model"].startswith("ckpt/step-0")
    tg = requests.post(f"{url}/v1/align", json={**body, "format": "textgrid"}, timeout=60)
    from praatio import textgrid

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "a.TextGrid").write_text(tg.text)
        tier = textgrid.openTextgrid(str(Path(d) / "a.TextGrid"), includeEmptyIntervals=False).getTier("words")
    assert [e.label for e in tier.entries] == "the cat sat on the mat".split()


def _nan_wav():
    x = np.zeros(16000, np.float32)
    x[100] = np.nan
    return wav_bytes(x)


@pytest.mark.parametrize("case,status,field", [
    ("not audio", 422, "audio_b64"),
    ("empty audio", 422, "audio_b64"),
    ("too long", 413, "audio_b64"),
    ("nan samples", 422, "audio_b64"),
    ("bad base64", 422, "audio_b64"),
    ("malformed json", 400, "body"),
    ("missing question", 422, "questions.0.question"),
    ("empty question", 422, "questions.0.question"),
    ("no questions", 422, "questions"),
    ("num_events 0", 422, "questions.0.num_events"),
    ("num_events over limit", 422, "questions.0.num_events"),
    ("untrained question type", 422, "questions.0.task"),
    ("unrecognised question", 422, "questions.0.question"),
    ("unknown format", 422, "format"),
    ("body too large", 413, "body"),
])
def test_bad_input_gets_a_4xx_naming_the_field(server, clips, case, status, field):
    url, _ = server
    good = base64.b64encode(clips[1]).decode()
    q = {"question": Q}
    bodies = {
        "not audio": {"audio_b64": base64.b64encode(b"hello, not audio").decode(), "questions": [q]},
        "empty audio": {"audio_b64": "", "questions": [q]},
        "too long": {"audio_b64": base64.b64encode(wav_bytes(np.zeros(16000 * 13, np.float32))).decode(),
                     "questions": [q]},
        "nan samples": {"audio_b64": base64.b64encode(_nan_wav()).decode(), "questions": [q]},
        "bad base64": {"audio_b64": "%%%not base64", "questions": [q]},
        "missing question": {"audio_b64": good, "questions": [{"num_events": 1}]},
        "empty question": {"audio_b64": good, "questions": [{"question": "  "}]},
        "no questions": {"audio_b64": good, "questions": []},
        "num_events 0": {"audio_b64": good, "questions": [{**q, "num_events": 0}]},
        "num_events over limit": {"audio_b64": good, "questions": [{**q, "num_events": 41}]},
        "untrained question type": {"audio_b64": good, "questions": [{"question": "When does the 2nd speaker start "
                                                                                  "speaking?"}]},
        "unrecognised question": {"audio_b64": good, "questions": [{"question": "Is it raining?"}]},
    }
    if case == "malformed json":
        r = requests.post(f"{url}/v1/localize", data=b'{"audio_b64": ', headers={"content-type": "application/json"},
                          timeout=30)
    elif case == "unknown format":
        r = requests.post(f"{url}/v1/align", json={"audio_b64": good, "transcript": "a cat", "format": "lrc"}, timeout=30)
    elif case == "body too large":
        r = requests.post(f"{url}/v1/localize", data=b"x" * 3_100_000, headers={"content-type": "application/json"},
                          timeout=30)
    else:
        r = requests.post(f"{url}/v1/localize", json=bodies[case], timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"]
    # no replica crashed: the next good request succeeds
    assert _localize(url, clips[1], [{"question": Q, "num_events": 1}]).status_code == 200


def test_concurrent_requests_are_batched_and_equal_unbatched(server, clips):
    url, _ = server
    questions = [[{"question": Q, "num_events": 1 + i % 3}] for i in range(len(clips))]
    serial = [_localize(url, c, q, return_curve=True).json()["answers"][0] for c, q in zip(clips, questions)]
    with cf.ThreadPoolExecutor(len(clips)) as pool:
        futures = [pool.submit(_localize, url, c, q, return_curve=True) for c, q in zip(clips, questions)]
        together = [f.result().json()["answers"][0] for f in futures]
    for a, b in zip(serial, together):
        assert np.allclose(a["times_s"], b["times_s"], atol=1e-3)
        assert np.allclose(a["curve"]["values"], b["curve"]["values"], atol=2e-3)
    info = requests.get(f"{url}/v1/model", timeout=30).json()["model"]
    assert info["largest_batch"] > 1  # the concurrent requests really shared forward passes


def test_api_key_and_back_pressure(server, clips):
    url, _ = server
    strict = f"{url}/strict"
    body = {"audio_b64": base64.b64encode(clips[0]).decode(), "questions": [{"question": Q, "num_events": 1}]}
    r = requests.post(f"{strict}/v1/localize", json=body, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["field"] == "X-API-Key"
    key = {"X-API-Key": "s3cret"}
    assert requests.post(f"{strict}/v1/localize", json=body, headers=key, timeout=60).status_code == 200
    with cf.ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda _: requests.post(f"{strict}/v1/localize", json=body, headers=key,
                                                      timeout=60).status_code, range(12)))
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes  # overload answers 503, never hangs


def test_client_and_cli(server, clips, tmp_path):
    import subprocess
    import sys

    from framecall.client import FramecallClient, FramecallError

    url, _ = server
    paths = []
    for i, clip in enumerate(clips[:3]):
        paths.append(tmp_path / f"clip{i}.wav")
        paths[-1].write_bytes(clip)
    client = FramecallClient(url)
    assert client.health()["status"] == "ok"
    out = client.localize(paths[0], [{"question": Q, "num_events": 2}])
    direct = _localize(url, clips[0], [{"question": Q, "num_events": 2}]).json()
    assert out["answers"][0]["times_s"] == direct["answers"][0]["times_s"]
    with pytest.raises(FramecallError) as err:
        client.localize(paths[0], [{"question": Q, "num_events": 0}])
    assert err.value.status == 422 and err.value.field == "questions.0.num_events"
    ctm = client.align(paths[0], "the cat sat on the mat", "ctm").splitlines()
    assert [line.split()[4] for line in ctm] == "the cat sat on the mat".split()  # utt chan start dur word conf
    # CLI: many files with a progress bar, one result file each; a bad file fails the run, not the others
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    cmd = [sys.executable, "-m", "framecall.client", "--url", url, "localize", *map(str, paths),
           str(tmp_path / "bad.wav"), Q, "--output", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "bad.wav: HTTP 422 [audio]" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip0.json", "clip1.json", "clip2.json"]
    tg = subprocess.run([sys.executable, "-m", "framecall.client", "--url", url, "align", str(paths[0]),
                         "the cat sat on the mat", "--format", "textgrid"], capture_output=True, text=True, timeout=120)
    assert tg.returncode == 0 and tg.stdout.startswith('File type = "ooTextFile"')


def test_a_proxy_on_another_port_is_refused_not_silently_reused(serve_url):
    # Serve keeps its first http_options: a benchmark asking for another port would otherwise
    # send every request to a port nothing listens on
    from framecall.serve_app import start_http_proxy

    port = int(serve_url.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{port}, not 127.0.0.1:{port + 1}"):
        start_http_proxy("127.0.0.1", port + 1)
    assert start_http_proxy("127.0.0.1", port) == serve_url
