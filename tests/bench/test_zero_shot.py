"""Table 1 (zero-shot timestamps): the job end to end on a tiny audio LM, a stand-in OpenAI-compatible
endpoint on 127.0.0.1 (retries, concurrency limit, a malformed answer, the key), and the bad inputs."""

import base64
import io
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import soundfile as sf

from framecall.bench.zero_shot import ChatEndpoint, LocalAudioLM, ZeroShotError, load_items, table1
from framecall.bench.zero_shot_cli import ZeroShotConfig, run

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory):
    """4 synthetic events items (1-3 s)."""
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("zs_events")
    with ShardWriter(out) as w:
        w.write_all(generate(SynthConfig(task="events", num=4, seed=11, max_seconds=3.0)))
    return out


def _header(table: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith("| model"))
    return [c.strip() for c in line.strip("|").split("|")]


def _row(table: str, model: str) -> dict[str, str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {model} |"))
    return dict(zip(_header(table), [c.strip() for c in line.strip("|").split("|")]))


@pytest.mark.slow
def test_zero_shot_job_on_a_tiny_audio_lm(words_all_dir, events_dir, tmp_path):
    out = tmp_path / "zs"
    subprocess.run([sys.executable, str(ROOT / "jobs/evaluate_zero_shot.py"), "--model", "tiny-omni",
                    "--data", str(words_all_dir), "--data", str(events_dir), "--limit", "3",
                    "--max-new-tokens", "24", "--output", str(out)], check=True, capture_output=True, text=True)
    table = (out / "table1.md").read_text()
    assert _header(table) == ["model", "words_all acc@20ms", "words_all acc@40ms", "words_all MAD ms",
                              "words_all parse fail", "events acc@40ms", "events acc@100ms", "events MAD ms",
                              "events parse fail"]
    report = json.loads((out / "scores.json").read_text())
    scores = report["models"]["tiny-omni"]["scores"]
    answers = [json.loads(x) for x in (out / "answers_0.jsonl").read_text().splitlines()]
    assert report["items"] == len(answers) == 6
    for task in ("words_all", "events"):
        mine = [a for a in answers if a["task"] == task]
        assert len(mine) == scores[task]["items"] == 3
        assert all(a["parse"] in ("ok", "recovered", "failed") and isinstance(a["answer"], str) for a in mine)
        failed = sum(a["parse"] == "failed" for a in mine) / 3
        assert scores[task]["parse_failure_rate"] == failed  # the table's rate is the answers' own
        assert _row(table, "tiny-omni")[f"{task} parse fail"] == f"{100 * failed:.1f}"
        assert 0.0 <= scores[task]["acc@40ms"] <= 1.0
    assert (out / "config.resolved.yaml").is_file()


class _StandIn(BaseHTTPRequestHandler):
    """A chat endpoint that answers each question with its gold JSON (from ``answers``), except the
    ``malformed`` question; the first request gets a 429 and the second a 500."""

    server: "StandInServer"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        srv = self.server
        with srv.lock:
            srv.calls += 1
            call, srv.inflight = srv.calls, srv.inflight + 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(0.05)  # let concurrent requests overlap
            if self.headers.get("Authorization") != f"Bearer {SECRET}":
                return self._reply(401, {"error": {"message": "bad key"}})
            if call <= 2:
                return self._reply(429 if call == 1 else 500, {"error": {"message": "busy"}})
            audio, text = body["messages"][0]["content"]
            assert audio["type"] == "input_audio" and audio["input_audio"]["format"] == "wav"
            samples, sr = sf.read(io.BytesIO(base64.b64decode(audio["input_audio"]["data"])))
            question = next(q for q in srv.answers if text["text"].startswith(q))
            srv.heard[question] = len(samples) / sr
            content = "I cannot tell from this audio." if question == srv.malformed else srv.answers[question]
            self._reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
        finally:
            with srv.lock:
                srv.inflight -= 1


class StandInServer(ThreadingHTTPServer):
    def __init__(self, answers: dict[str, str], malformed: str) -> None:
        super().__init__(("127.0.0.1", 0), _StandIn)
        self.answers, self.malformed = answers, malformed
        self.lock = threading.Lock()
        self.calls = self.inflight = self.max_inflight = 0
        self.heard: dict[str, float] = {}


@pytest.fixture
def stand_in(events_dir):
    from framecall.data.shards import list_shards, read_shard

    rows = [r for p in list_shards(events_dir) for r in read_shard(p).to_pylist()]
    answers = {r["prompt"]: r["target_text"] for r in rows}  # the gold JSON, times to 10 ms
    server = StandInServer(answers, malformed=rows[0]["prompt"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, {r["prompt"]: r["duration_s"] for r in rows}
    server.shutdown()
    server.server_close()


def test_zero_shot_against_a_local_endpoint(stand_in, events_dir, tmp_path, monkeypatch, capsys):
    server, durations = stand_in
    monkeypatch.setenv("ZS_TEST_KEY", SECRET)
    url = f"openai:http://127.0.0.1:{server.server_address[1]}/v1"
    cfg = ZeroShotConfig(models=[url], data=[str(events_dir)], api_key_env="ZS_TEST_KEY", concurrency=2,
                         timeout_s=10, retries=3, max_retry_wait_s=0.05, output=str(tmp_path / "zs"))
    report = run(cfg)
    scores = report["models"][url]["scores"]["events"]
    assert report["models"][url]["retried"] == 2  # the 429 and the 500, each retried once
    assert server.calls == 4 + 2 and server.max_inflight <= 2
    assert scores["items"] == 4 and scores["parse_failure_rate"] == 0.25  # the malformed answer
    assert scores["acc@40ms"] == scores["acc@100ms"] == 0.75  # the gold answers, a miss for the malformed one
    for question, seconds in durations.items():  # every clip arrived whole as wav
        assert server.heard[question] == pytest.approx(seconds, abs=0.01)
    assert _row(report["table"], url)["events parse fail"] == "25.0"
    printed = capsys.readouterr()
    for f in (tmp_path / "zs").iterdir():
        assert SECRET not in f.read_text(), f
    assert SECRET not in printed.out + printed.err and SECRET not in repr(ChatEndpoint(url[7:], api_key_env="ZS_TEST_KEY"))


def test_a_refused_request_is_not_retried_and_stops_the_run(stand_in, events_dir, monkeypatch):
    server, _ = stand_in
    monkeypatch.setenv("ZS_TEST_KEY", "wrong-key")
    endpoint = ChatEndpoint(f"http://127.0.0.1:{server.server_address[1]}", api_key_env="ZS_TEST_KEY",
                            concurrency=1, max_retry_wait_s=0.05)
    with pytest.raises(ZeroShotError, match=r"/v1/chat/completions \(item .*\): HTTP 401 after 1 attempt"):
        endpoint.answer(load_items([events_dir]))
    # of the 4 items, the one in flight when the first failed may still be sent; the rest are dropped
    assert server.calls <= 2 and endpoint.retried == 0


def test_an_endpoint_that_never_answers_names_the_timeout(events_dir):
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        endpoint = ChatEndpoint(f"http://127.0.0.1:{silent.getsockname()[1]}", api_key_env="none", timeout_s=0.5)
        with pytest.raises(ZeroShotError, match=r"no answer within timeout_s=0.5 s"):
            endpoint.answer(load_items([events_dir], limit=1))
    finally:
        silent.close()


def test_a_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ZS_MISSING_KEY", raising=False)
    with pytest.raises(ZeroShotError, match="'ZS_MISSING_KEY' is not set"):
        ChatEndpoint("http://127.0.0.1:9", api_key_env="ZS_MISSING_KEY")


def test_a_text_only_model_is_refused():
    with pytest.raises(ZeroShotError, match="--model tiny-judge: model_type 'qwen2' has no audio encoder"):
        LocalAudioLM("tiny-judge")


def test_rows_that_cannot_be_scored_are_named(tmp_path, events_dir):
    with pytest.raises(ZeroShotError, match=f"--data {events_dir}: no rows in split 'nope'"):
        load_items([events_dir], split="nope")
    from framecall.data.shards import ShardWriter, list_shards, read_shard

    row = read_shard(list_shards(events_dir)[0]).to_pylist()[0]
    with ShardWriter(tmp_path / "bad") as w:
        w.write({**row, "event_times_s": [], "num_events": 0})
    with pytest.raises(ZeroShotError, match=r"shard-\d+\.parquet row 0 \(id .*\): event_times_s is empty"):
        load_items([tmp_path / "bad"])


def test_table1_layout_words_then_speakers_then_events():
    summary = {"acc@20ms": 0.5, "acc@40ms": 0.75, "acc@100ms": 1.0, "mad_s": 0.0125, "parse_failure_rate": 0.1}
    table = table1({"m": {"events": summary, "words": summary, "speakers": summary}})
    assert _header(table)[1:] == ["words acc@20ms", "words acc@40ms", "words MAD ms", "words parse fail",
                                  "speakers acc@40ms", "speakers acc@100ms", "speakers MAD ms", "speakers parse fail",
                                  "events acc@40ms", "events acc@100ms", "events MAD ms", "events parse fail"]
    assert list(_row(table, "m").values())[1:5] == ["50.0", "75.0", "12", "10.0"]


def test_a_number_outside_the_clip_is_not_scored_as_a_timestamp():
    """The lenient parse reads any number ("16000 Hz"); one such time would make MAD meaningless."""
    from framecall.bench.zero_shot import ZeroShotItem, score_answers

    item = ZeroShotItem("a", "events", "q", b"", [1.0], 3.0, "test")
    texts = ["The event is at 1.02 s; sampled at 16000 Hz.", "At 16000.", "[3.5]", "[-2]"]
    records, summary = score_answers([item] * 4, texts)
    assert [r["pred_s"] for r in records] == [[1.02], [], [3.5], []]  # 3.5: past the end, within the margin
    assert [r["out_of_clip_s"] for r in records] == [[16000.0], [16000.0], [], [-2.0]]
    assert [r["parse"] for r in records] == ["recovered", "failed", "ok", "failed"]
    s = summary["events"]
    assert s["out_of_clip_rate"] == 0.75 and s["parse_failure_rate"] == 0.5
    assert s["mad_s"] < 3.0  # never 16000 s
