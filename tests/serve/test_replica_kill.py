"""A model replica killed under load (2 replicas, real HTTP): every request is answered, none is
lost (no answer, or a 5xx other than 503 + Retry-After), none hangs; the client retries the 503s."""

import threading
import time

import pytest

from tests_helpers import make_checkpoint, speech_clip, wav_bytes

pytestmark = pytest.mark.slow
Q = "When does the 1st occurrence of the word 'cat' occur?"
THREADS, PER_THREAD = 3, 12


@pytest.fixture(scope="module")
def two_replicas(serve_url, tmp_path_factory):
    from ray import serve

    from framecall.serve_app import build_app

    root = tmp_path_factory.mktemp("serve_kill")
    ckpt = make_checkpoint(root / "ckpt", ["words"])
    serve.run(build_app({"checkpoint": str(ckpt), "allowed_roots": [str(root)], "model_replicas": 2,
                         "max_batch_size": 4, "batch_wait_timeout_s": 0.01}), name="kill", route_prefix="/kill")
    yield f"{serve_url}/kill"
    serve.delete("kill")


def model_replicas(app: str) -> list[str]:
    """Names of the live replica actors of the app's model deployment (this session's Ray, by its own connection)."""
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{app}#FrameModelServer#")]


def test_a_killed_replica_loses_no_request(two_replicas, tmp_path):
    import ray

    from framecall.client import FramecallClient, FramecallError

    audio = tmp_path / "cat.wav"
    audio.write_bytes(wav_bytes(speech_clip("the cat sat on the mat")[0]))
    client = FramecallClient(two_replicas, retries=8, timeout=60)
    seen: list[tuple[int, str | None]] = []  # every HTTP answer, retries included
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append((r.status_code, r.headers.get("Retry-After"))))
    outcomes: list[str] = []
    lock = threading.Lock()

    def load():
        for _ in range(PER_THREAD):
            try:
                answer = client.localize(audio, [{"question": Q, "num_events": 1}])
                outcome = "ok" if len(answer["answers"][0]["times_s"]) == 1 else "wrong"
            except FramecallError as e:
                outcome = f"http {e.status}"
            except Exception as e:  # noqa: BLE001 - a timeout or a dropped connection is a lost request
                outcome = f"lost: {type(e).__name__}"
            with lock:
                outcomes.append(outcome)

    victims = model_replicas("kill")
    assert len(victims) == 2
    threads = [threading.Thread(target=load) for _ in range(THREADS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    while len(outcomes) < 4 and time.monotonic() - start < 60:  # kill while requests are in flight
        time.sleep(0.02)
    ray.kill(ray.get_actor(victims[0], namespace="serve"), no_restart=True)
    for t in threads:
        t.join(timeout=240)
    wall = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a request hung"
    errors = [(s, ra) for s, ra in seen if s != 200]
    print(f"\nreplica kill: {THREADS} clients x {PER_THREAD} requests, {len(outcomes)} answered, "
          f"{outcomes.count('ok')} ok, {client.retried} retried (503), {len(errors)} non-200 answers {errors}, "
          f"{wall:.1f} s")
    assert outcomes == ["ok"] * THREADS * PER_THREAD, outcomes
    assert all(s == 503 and ra for s, ra in errors), errors  # only 503 + Retry-After, which the client retried
