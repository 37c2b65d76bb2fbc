"""Console progress of a training loop (rank 0): step, loss, throughput and ETA at an interval."""

from __future__ import annotations

import sys
import time


def progress_bars_on(setting: str) -> bool:
    """``data.progress_bars``: on | off | auto (on when a person watches: stdout is a terminal)."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"data.progress_bars must be auto, on or off, got {setting!r}")
    return setting == "on" or (setting == "auto" and sys.stdout.isatty())


class ConsoleProgress:
    """Prints ``[framecall] step 150/3500 loss 0.4120 | 2.31 steps/s 37.0 items/s | ETA 24m10s`` at the
    first step, then every ``every_steps`` steps or ``every_s`` seconds, whichever comes first, and at the
    last step. Throughput counts the steps since the previous line (``items_per_step``: the global batch)."""

    def __init__(self, max_steps: int, items_per_step: int, every_steps: int = 50, every_s: float = 10.0,
                 start_step: int = 0, out=None) -> None:
        self.max_steps, self.items_per_step = max_steps, items_per_step
        self.every_steps, self.every_s = every_steps, every_s
        self.out = out or sys.stdout
        self._last_step, self._last_t = start_step, time.monotonic()

    def update(self, step: int, loss) -> str | None:
        """-> the line printed at this step, or None when it is not time yet. ``loss``: a number or a
        0-d tensor, read only when a line is due (no device sync on the other steps)."""
        now = time.monotonic()
        due = step == self.max_steps or step - self._last_step >= self.every_steps or now - self._last_t >= self.every_s
        if not due and self._last_step > 0:
            return None
        rate = (step - self._last_step) / max(now - self._last_t, 1e-9)
        eta = (self.max_steps - step) / rate if rate > 0 else float("inf")
        line = (f"[framecall] step {step}/{self.max_steps} loss {float(loss):.4f} | {rate:.2f} steps/s "
                f"{rate * self.items_per_step:.1f} items/s | ETA {format_eta(eta)}")
        # write, not print: Ray Train patches print on its workers to tee it into its logger, which
        # showed every line twice in the driver's output
        self.out.write(line + "\n")
        self.out.flush()
        self._last_step, self._last_t = step, now
        return line


def format_eta(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
