"""The PolyAudio runner end to end on the tiny model, judged by the rule judge and by an LLM
judge behind a real local OpenAI-style endpoint (Ray Serve, tiny causal LM, real HTTP)."""

import pytest
import requests

from framecall.data.shards import ShardWriter
from framecall.polyaudio.bench import PolyConfig, generate_items, judge_item
from framecall.polyaudio.judges import LLMJudge, RuleJudge

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("poly_bench")
    cfg = PolyConfig(split="bench", per_task=1, seed=3)
    with ShardWriter(out) as w:
        w.write_all(generate_items(cfg))
    return out


@pytest.fixture(scope="module")
def judge_url(serve_url):
    from ray import serve

    from framecall.polyaudio.judge_server import build_judge_app

    serve.run(build_judge_app({"model": "tiny-judge"}), name="judge", route_prefix="/judge")
    yield f"{serve_url}/judge"
    serve.delete("judge")


def test_llm_judge_scores_every_item_through_token_probabilities(judge_url, bench_dir):
    import pyarrow.parquet as pq

    from framecall.data.shards import list_shards

    rows = pq.read_table(list_shards(bench_dir)).to_pylist()
    judge = LLMJudge(judge_url, guided=True)
    verdicts = [judge.score(judge_item(r), f"<answer>{r['answer']}</answer>") for r in rows]
    assert len(verdicts) == 11 and judge.failures == 0
    for v in verdicts:  # a probability-weighted mean of 1..5, not a parsed digit
        assert 1.0 <= v.score <= 5.0 and v.score != round(v.score)
    # the raw endpoint speaks the OpenAI shape
    body = {"model": "judge", "messages": [{"role": "user", "content": "Score: 1-5"}], "max_tokens": 1,
            "logprobs": True, "top_logprobs": 5}
    out = requests.post(f"{judge_url}/v1/chat/completions", json=body, timeout=60).json()
    assert len(out["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 5
    bad = requests.post(f"{judge_url}/v1/chat/completions", json={"messages": []}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


def test_unparseable_judge_output_is_retried_once_then_a_failure(judge_url):
    judge = LLMJudge(judge_url, use_logprobs=False, guided=True)
    judge.guided_choices = ["maybe"]  # the endpoint can only answer a non-digit
    calls = []
    original = judge._ask

    def counting(prompt):
        calls.append(prompt)
        return original(prompt)

    judge._ask = counting
    verdict = judge.score({"question": "q", "reference": "r"}, "<answer>x</answer>")
    assert verdict.score is None and "unparseable" in verdict.detail
    assert judge.failures == 1 and len(calls) == 2  # asked, retried once, recorded as a failure


def test_runner_end_to_end(ray_session, bench_dir, judge_url, tmp_path):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("eval_polyaudio", root / "jobs" / "eval_polyaudio.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    reports = job.main(["--model", "tiny-qwen2-audio", "--bench", str(bench_dir), "--judge", "rule,llm",
                        "--judge-url", judge_url, "--judge-guided", "--max-new-tokens", "8", "--batch-size", "4",
                        "--output", str(tmp_path / "out")])
    rep = reports["model"]
    assert rep["items"] == 11 and rep["items_per_s"] > 0
    rule = rep["per_task"]["rule"]["means"]
    assert len(rule) == 12 and all(1.0 <= v <= 5.0 for v in rule.values())  # 11 tasks + overall
    assert rep["per_task"]["llm"]["failures"] == 0
    assert all(r["score_llm"] is not None for r in rep["records"])
    assert rep["agreement"]["items"] == 11
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| model | captioning |" in table and "items/s" in table
    # the same bench through the single-audio protocol (clips concatenated with 2 s silence)
    single = job.main(["--model", "tiny-omni", "--bench", str(bench_dir), "--single-audio", "--limit", "3",
                       "--max-new-tokens", "4", "--output", str(tmp_path / "single")])
    assert single["model"]["items"] == 3 and single["model"]["single_audio"]
    assert RuleJudge().name == "rule"
