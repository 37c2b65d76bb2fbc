"""The paper's tables in miniature, on the tiny model and synthetic tasks (``jobs/reproduce.py``).

Every model gets the same budget (``steps`` x 2 workers x batch 8). Runs are resumable:
a run whose ``test_metrics.json`` exists is not trained again. Tables:

- Table 2: tokens vs. Poisson vs. binary on words / speakers / events.
- Table 4: length generalization. Words asked about only in 0-4 s (0-8 s) during training,
  tested in 0-4 s and 4-8 s (0-8 s and 8-12 s); all clips 8-12 s long, train and test alike.
  The harder case (test clips longer than any training clip) evaluates the Table 2 words
  models, trained on clips of at most ``clip_s`` seconds.
- Table 5: the interpolated loss (lambda = 0.05): token output vs. Poisson output.
- Decoders x losses on words_all (every registered Poisson decoder, smoothed ones included;
  unconditional and conditional Poisson NLL; positional and accuracy-optimal Hungarian pairing),
  with how well Lam(T) counts the words.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framecall.config import build_config


@dataclass
class ReproduceConfig:
    output: str = "runs/reproduce"
    data_root: str = "runs/reproduce/data"
    steps: int = 500
    eval_every: int = 100
    num_items: int = 2000
    """Training corpus size per task; test sets for length generalization get num_items // 10."""
    clip_s: float = 6.0
    """Longest clip of the Table 2 corpora."""
    num_workers: int = 2
    batch_size: int = 8
    max_new_tokens: int = 160
    lam: float = 0.05
    seed: int = 0
    lg_task: str = "words"
    """Task of the length-generalization tables (words, as in the paper; speakers or events
    when the tiny model cannot learn single-word localization within the budget)."""
    lg_windows: tuple[str, ...] = ("0-4", "0-8")
    """Training answer windows of Table 4: 0-4 is tested on 4-8 s, 0-8 on 8-12 s (one model per
    method and window, so fewer windows means fewer fine-tunes)."""
    tables: tuple[str, ...] = ("table2", "table4", "longer", "table5", "decoders")
    """table4: matched/mismatched windows; longer: Table 2's models on clips longer than any they saw."""
    model: str = "tiny-omni"
    """Backbone of every model (a preset or a checkpoint path)."""
    finetune: str = "full"
    """full | lora | head: how the backbone trains (a pretrained one: lora or head)."""
    quick: bool = False
    """CI mode: a few items, 2 steps, 1 worker, one model per (objective, loss) shared by all
    tables (5 models instead of 18); checks that every table is produced, nothing more."""


LG_WINDOWS = {"0-4": ((0, 4), (4, 8)), "0-8": ((0, 8), (8, 12))}
"""Table 4's training window -> (train window, mismatched test window), seconds."""


def _quick(cfg: ReproduceConfig) -> ReproduceConfig:
    cfg.steps, cfg.eval_every, cfg.num_items, cfg.num_workers, cfg.batch_size = 2, 2, 20, 1, 2
    cfg.max_new_tokens, cfg.clip_s = 12, 3.0
    return cfg


def _make(path: Path, task: str, num: int, seed: int, lo: float, hi: float, window=None, test_only=False) -> Path:
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate, synth_params

    if (path / "_manifest.json").is_file():
        return path
    splits = {"test": 1.0} if test_only else ({"train": 0.8, "val": 0.1, "test": 0.1})
    synth = SynthConfig(task=task, num=num, seed=seed, min_seconds=lo, max_seconds=hi, answer_window=window,
                        splits=splits)
    # made_by: the training runs reuse this corpus as it is (not one they made and may rebuild)
    with ShardWriter(path, params=synth_params(synth, made_by="jobs/reproduce.py")) as w:
        w.write_all(generate(synth))
    return path


class Reproduction:
    def __init__(self, cfg: ReproduceConfig, tracking_uri: str | None = None) -> None:
        unknown = [w for w in cfg.lg_windows if w not in LG_WINDOWS]
        if unknown:
            raise ValueError(f"lg_windows: unknown window(s) {unknown}; choose from {sorted(LG_WINDOWS)}")
        self.cfg = _quick(cfg) if cfg.quick else cfg
        self.out = Path(cfg.output).resolve()
        self.data = Path(cfg.data_root).resolve()
        self.tracking_uri = tracking_uri or f"sqlite:///{self.out / 'mlflow.db'}"
        self.walls: dict[str, float] = {}

    def corpus(self, name: str, task: str, lo: float, hi: float, window=None, test_only=False, seed=0) -> Path:
        n = max(10, self.cfg.num_items // 10) if test_only else self.cfg.num_items
        return _make(self.data / name, task, n, self.cfg.seed + seed, lo, hi, window, test_only)

    def train(self, name: str, data: Path, objective: str, loss: str = "poisson", **extra: Any) -> Path:
        """Train one model (or reuse a finished run) -> its best checkpoint."""
        from framecall.train.config import TrainJobConfig
        from framecall.train.runner import fit

        c = self.cfg
        if c.quick:  # CI: one model per (objective, loss), whatever the table; checks the tables, not results
            name = f"quick_{objective}_{loss}"
        out = self.out / name
        if (out / "test_metrics.json").is_file():
            backbone = json.loads((out / "best" / "manifest.json").read_text()).get("backbone")
            if backbone != c.model:
                raise ValueError(f"{out} holds a finished run on {backbone!r}, not {c.model!r}: "
                                 f"give this backbone its own --output")
            return out / "best"
        overrides = [f"train.objective={objective}", f"train.loss={loss}", f"train.max_steps={c.steps}",
                     f"train.eval_every={c.eval_every}", f"train.batch_size={c.batch_size}",
                     f"ray.num_workers={c.num_workers}", f"eval.max_new_tokens={c.max_new_tokens}",
                     "eval.figures=0", "data.make_if_missing=false", f"train.seed={c.seed}",
                     f"train.warmup_steps={min(100, c.steps // 5 + 1)}", f"model.name={c.model}",
                     f"model.finetune={c.finetune}", f"mlflow.tracking_uri={self.tracking_uri}",
                     "mlflow.experiment=reproduce", f"mlflow.run_name={name}", "mlflow.register=false",
                     *[f"{k}={v}" for k, v in extra.items()]]
        overrides += ["eval.decoders=[all]"]  # every registered decoder the head reads
        cfg = build_config(TrainJobConfig, flags={"data.data_dir": str(data), "output": str(out)},
                           overrides=overrides)
        t0 = time.time()
        result = fit(cfg)
        self.walls[name] = time.time() - t0
        return result.best_checkpoint

    def test(self, ckpt: Path, data: Path, split: str | None = "test", decoders=("topn_nms", "tokens")) -> dict:
        """Scores of a checkpoint on a corpus (cached beside the run)."""
        from framecall.train.evaluate import evaluate_checkpoint

        tag = "" if tuple(decoders) == ("topn_nms", "tokens") else "_" + "-".join(decoders)
        cache = ckpt.parent / f"eval_{data.name}_{split}{tag}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        scores, _, records = evaluate_checkpoint(ckpt, data, split=split, decoders=list(decoders),
                                                 max_new_tokens=self.cfg.max_new_tokens)
        counts = [(r["expected_count"], len(r["gold"])) for r in records if r.get("expected_count") is not None]
        if counts:
            est = np.array([c for c, _ in counts])
            gold = np.array([g for _, g in counts])
            scores["count"] = {"mean_abs_error": float(np.abs(est - gold).mean()),
                               "rounded_exact": float((np.round(est) == gold).mean())}
        # where each output puts its answers (Table 4: how many land inside the training window)
        scores["answer_times_s"] = {d: [t for r in records for t in (r["preds"].get(d) or [])]
                                    for d in decoders if d != "all"}
        cache.write_text(json.dumps(scores))
        return scores

    # ---- the tables -------------------------------------------------------------------------
    def table2(self) -> str:
        c = self.cfg
        cols = {"words": ("acc@20ms", "acc@40ms"), "speakers": ("acc@40ms", "acc@100ms"),
                "events": ("acc@40ms", "acc@100ms")}
        head = ["method"] + [f"{t} {m}" for t, ms in cols.items() for m in (*ms, "MAD")] + ["token parse fail"]
        rows = []
        for method, objective, loss, out_name in (("tokens", "tokens", "poisson", "tokens"),
                                                  ("Poisson", "frame", "poisson", "topn_nms"),
                                                  ("binary", "frame", "binary", "topn_nms")):
            cells, fails = [], []
            for i, task in enumerate(cols):
                data = self.corpus(f"t2_{task}", task, 1.0, c.clip_s, seed=i)
                ckpt = self.train(f"t2_{task}_{method.lower()}", data, objective, loss)
                s = self.test(ckpt, data)[out_name]["all"]
                cells += [_pct(s[m]) for m in cols[task]] + [_ms(s["mad_s"])]
                if "parse_failure_rate" in s:
                    fails.append(f"{task} {_pct(s['parse_failure_rate'])}")
            rows.append([method, *cells, ", ".join(fails) or "-"])
        return _md(head, rows)

    def _lg_corpora(self) -> tuple[str, str, float, float]:
        """(task, corpus-name suffix, shortest and longest clip in s) of the length-generalization tables."""
        c = self.cfg
        lo, hi = (3.0, 4.0) if c.quick else (8.0, 12.0)
        return c.lg_task, "" if c.lg_task == "words" else f"_{c.lg_task}", lo, hi

    def table4(self) -> str:
        c = self.cfg
        task, sfx, lo, hi = self._lg_corpora()
        head = ["method", "train window", "matched acc@20", "mismatched acc@20", "matched acc@100",
                "mismatched acc@100", "mismatched / matched (acc@100)", "mismatched answers in train window"]
        rows = []
        for train_w, test_w in [LG_WINDOWS[w] for w in c.lg_windows]:
            if c.quick:
                train_w, test_w = (0, 1.5), (1.5, 3)
            tag = f"{train_w[0]:g}-{train_w[1]:g} -> {test_w[0]:g}-{test_w[1]:g}"
            train = self.corpus(f"t4{sfx}_train_{train_w[0]}_{train_w[1]}", task, lo, hi, window=train_w, seed=10)
            matched = self.corpus(f"t4{sfx}_test_{train_w[0]}_{train_w[1]}", task, lo, hi, window=train_w,
                                  test_only=True, seed=11)
            mismatched = self.corpus(f"t4{sfx}_test_{test_w[0]}_{test_w[1]}", task, lo, hi, window=test_w,
                                     test_only=True, seed=12)
            for method, objective, loss, out_name in (("tokens", "tokens", "poisson", "tokens"),
                                                      ("Poisson", "frame", "poisson", "topn_nms"),
                                                      ("binary", "frame", "binary", "topn_nms")):
                if objective == "tokens" and c.finetune == "head":  # head-only trains no language model
                    rows.append([method, tag, "n/a (head-only trains no LM)", *["-"] * 5])
                    continue
                ckpt = self.train(f"t4{sfx}_{train_w[0]}_{train_w[1]}_{method.lower()}", train, objective, loss)
                m = self.test(ckpt, matched, split=None)[out_name]["all"]
                mis = self.test(ckpt, mismatched, split=None)
                x, times = mis[out_name]["all"], mis["answer_times_s"][out_name]
                inside = float(np.mean([train_w[0] <= t < train_w[1] for t in times])) if times else float("nan")
                ratio = x["acc@100ms"] / m["acc@100ms"] if m["acc@100ms"] > 0 else float("nan")
                rows.append([method, tag, _pct(m["acc@20ms"]), _pct(x["acc@20ms"]), _pct(m["acc@100ms"]),
                             _pct(x["acc@100ms"]), f"{ratio:.2f}", _pct(inside)])
        return _md(head, rows)

    def longer(self) -> str:
        """The Table 2 models (clips <= clip_s, answers anywhere) on clips longer than any they saw."""
        c = self.cfg
        task, sfx, lo, hi = self._lg_corpora()
        longer = self.corpus(f"t4{sfx}_long_test", task, lo, hi, window=(4, 8) if not c.quick else (1.5, 3),
                             test_only=True, seed=13)
        hard = []
        for method, out_name in (("tokens", "tokens"), ("Poisson", "topn_nms"), ("binary", "topn_nms")):
            ckpt = self.train(f"t2_{task}_{method.lower()}", self.data / f"t2_{task}", *{
                "tokens": ("tokens", "poisson"), "Poisson": ("frame", "poisson"), "binary": ("frame", "binary")}[method])
            same = self.test(ckpt, self.data / f"t2_{task}")[out_name]["all"]
            far = self.test(ckpt, longer, split=None)[out_name]["all"]
            hard.append([method, _pct(same["acc@100ms"]), _pct(far["acc@100ms"]), _pct(far["acc@20ms"])])
        hard_head = ["method", f"acc@100 own test (clips <= {c.clip_s:g} s)",
                     f"acc@100 clips {lo:g}-{hi:g} s, asked about 4-8 s", "acc@20 there"]
        return _md(hard_head, hard)

    def table5(self) -> str:
        c = self.cfg
        data = self.corpus("t2_words", "words", 1.0, c.clip_s, seed=0)
        ckpt = self.train("t5_interpolated", data, "interpolated", "poisson", **{"train.interp_lambda": c.lam})
        s = self.test(ckpt, data, decoders=("topn_nms", "posterior_mode", "tokens"))
        head = ["output (lambda = %g)" % c.lam, "acc@20", "acc@40", "acc@100", "MAD (ms)", "parse fail"]
        rows = []
        for name, label in (("tokens", "token output"), ("topn_nms", "Poisson output (top-n NMS)"),
                            ("posterior_mode", "Poisson output (posterior mode)")):
            a = s[name]["all"]
            rows.append([label, _pct(a["acc@20ms"]), _pct(a["acc@40ms"]), _pct(a["acc@100ms"]), _ms(a["mad_s"]),
                         _pct(a["parse_failure_rate"]) if "parse_failure_rate" in a else "-"])
        return _md(head, rows)

    def decoders_losses(self) -> str:
        c = self.cfg
        data = self.corpus("words_all", "words_all", 1.0, c.clip_s, seed=20)
        head = ["loss", "decoder", "acc@20 positional", "acc@20 hungarian_acc", "acc@40 positional",
                "acc@40 hungarian_acc", "MAD (ms) positional", "|Lam(T) - n|", "round(Lam(T)) = n"]
        rows = []
        for loss in ("poisson", "poisson_conditional"):
            ckpt = self.train(f"dl_{loss}", data, "frame", loss)
            s = self.test(ckpt, data, decoders=("all",))  # every registered decoder a Poisson head supports
            for d in [k for k in s if k not in ("count", "answer_times_s")]:
                a = s[d]["all"]
                rows.append([loss, d, _pct(a["acc@20ms"]), _pct(a.get("hungarian_acc/acc@20ms")),
                             _pct(a["acc@40ms"]), _pct(a.get("hungarian_acc/acc@40ms")), _ms(a["mad_s"]),
                             f"{s['count']['mean_abs_error']:.2f}", _pct(s["count"]["rounded_exact"])])
        return _md(head, rows)

    def run(self) -> str:
        t0 = time.time()
        c = self.cfg
        sections = []
        if "table2" in c.tables:
            sections.append(("Table 2 (miniature): tokens vs. Poisson vs. binary", self.table2()))
        if "table4" in c.tables:
            sections.append((f"Table 4 (miniature): length generalization on {c.lg_task}, same clip lengths "
                             f"in train and test ({c.model}, finetune {c.finetune})", self.table4()))
        if "longer" in c.tables:
            sections.append((f"Length generalization on {c.lg_task}, harder case: test clips longer than any "
                             "training clip", self.longer()))
        if "table5" in c.tables:
            sections.append(("Table 5 (miniature): interpolated loss", self.table5()))
        if "decoders" in c.tables:
            sections.append(("Decoders x Poisson losses on words_all", self.decoders_losses()))
        text = "\n\n".join(f"**{title}**\n\n{table}" for title, table in sections)
        text += (f"\n\nBudget per model: {c.steps} steps x {c.num_workers} workers x batch {c.batch_size}; "
                 f"corpora of {c.num_items} items; seed {c.seed}; wall time of this invocation "
                 f"{time.time() - t0:.0f} s (runs reused from earlier invocations are not re-timed).\n")
        subset = "" if set(c.tables) == {"table2", "table4", "longer", "table5", "decoders"} else \
            f"_{'_'.join(c.tables)}_{c.lg_task}"
        (self.out / f"tables{subset}.md").write_text(text)
        (self.out / f"walls{subset}.json").write_text(json.dumps(self.walls, indent=2))
        return text


def _pct(v: float) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def _ms(v: float) -> str:
    return "-" if v is None or v != v else f"{1000 * v:.0f}"


def _md(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in rows])
