"""A minimal OpenAI-style chat route over a local Hugging Face causal LM, on Ray Serve.

Ray's own LLM serving needs vLLM; this is the small offline path for an LLM judge:
``POST /v1/chat/completions`` with ``messages``, ``max_tokens``, ``logprobs`` /
``top_logprobs`` and vLLM's ``guided_choice`` (restricts the first token to the choices'
first tokens, renormalised), which is what the G-Eval score needs.

    serve run framecall.polyaudio.judge_server:build_judge_app model=/ckpt/Qwen3-8B num_gpus=1

Arguments: ``model``; ``num_cpus`` (default 1) and ``num_gpus`` (default 0; fractions below 1 share a GPU)
the replica holds; ``device`` (auto: the replica's GPU when num_gpus > 0, else cpu) and ``dtype`` (auto: bf16
on CUDA, fp32 on CPU) for :func:`framecall.runtime.choose_device`.
"""

# no `from __future__ import annotations`: FastAPI resolves the route annotations at class creation

import time
from typing import Any

import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve

judge_app = FastAPI(title="framecall judge", version="1")


@serve.deployment(ray_actor_options={"num_cpus": 1})
@serve.ingress(judge_app)
class ChatJudgeServer:
    def __init__(self, model: str = "tiny-judge", device: str = "cpu", dtype: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from framecall.models.tiny import TINY_PRESETS, ensure_tiny
        from framecall.runtime import choose_device

        plan = choose_device(device, dtype)
        path = str(ensure_tiny(model)) if model in TINY_PRESETS else model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=plan.dtype).to(plan.device).eval()
        self.name = model

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return turns + "<|im_start|>assistant\n"

    @judge_app.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model"}]}

    @judge_app.post("/v1/chat/completions")
    async def chat(self, body: dict[str, Any]):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return JSONResponse({"error": {"message": "messages must be a non-empty list", "param": "messages"}},
                                status_code=400)
        ids = self.tokenizer(self._prompt(messages), return_tensors="pt", add_special_tokens=False)["input_ids"]
        ids = ids.to(self.model.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[0, -1].float()  # [V]
        logprobs = torch.log_softmax(logits, -1)
        choices = body.get("guided_choice")
        if choices:
            first = [self.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in choices]
            allowed = torch.tensor(first)
            restricted = torch.full_like(logprobs, float("-inf"))
            restricted[allowed] = torch.log_softmax(logits[allowed], -1)
            logprobs = restricted
            best = int(torch.argmax(logprobs))
            content = choices[first.index(best)]
        else:
            out = self.model.generate(input_ids=ids, max_new_tokens=int(body.get("max_tokens") or 16),
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
            best = int(out[0, ids.shape[1]])
            content = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                                  "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs"):
            k = min(int(body.get("top_logprobs") or 0), 20)
            finite = int(torch.isfinite(logprobs).sum())
            top = torch.topk(logprobs, min(k, finite)) if k else None
            choice["logprobs"] = {"content": [{
                "token": self.tokenizer.decode([best]), "logprob": float(logprobs[best]),
                "top_logprobs": [] if top is None else [
                    {"token": self.tokenizer.decode([int(i)]), "logprob": float(v)} for v, i in zip(*top)],
            }]}
        return {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": [choice]}


JUDGE_ARGS = ("model", "num_cpus", "num_gpus", "device", "dtype")


def build_judge_app(args: dict[str, Any]):
    """``args`` (strings from ``serve run key=value`` or a config's ``args:``): see the module docstring."""
    from framecall.runtime import actor_options, placed_device

    unknown = sorted(set(args) - set(JUDGE_ARGS))
    if unknown:
        raise ValueError(f"judge server: unknown argument(s) {unknown}; valid: {list(JUDGE_ARGS)}")
    try:
        num_cpus, num_gpus = float(args.get("num_cpus", 1)), float(args.get("num_gpus", 0))
    except ValueError:
        raise ValueError(f"judge server: num_cpus / num_gpus must be numbers, got {args.get('num_cpus')!r}, "
                         f"{args.get('num_gpus')!r}") from None
    options = actor_options("judge server (num_cpus, num_gpus)", num_cpus, num_gpus)
    device = placed_device(num_gpus, str(args.get("device", "auto")))
    return ChatJudgeServer.options(ray_actor_options=options).bind(  # type: ignore[attr-defined]
        args.get("model", "tiny-judge"), device, str(args.get("dtype", "auto")))
