"""framecall: frame-level internal tool use for audio LMs, and multi-audio reasoning, on Ray.

The Python API (imported on first use, so ``import framecall`` stays light)::

    from framecall import FrameLocalizer
    loc = FrameLocalizer.from_pretrained("runs/train_poisson/best")
    loc.localize("talk.wav", "When does the 1st speaker start speaking?").to_rttm(file_id="talk")
    loc.align("talk.wav", "the cat sat on the mat").to_textgrid()
"""

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"FrameLocalizer": "framecall.inference", "Query": "framecall.inference",
            "Localization": "framecall.results", "Alignment": "framecall.results", "WordTiming": "framecall.results"}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    # lazy: torch and transformers load only when the API is used (the CLI client and the Ray jobs
    # import submodules of framecall without needing the model stack)
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'framecall' has no attribute {name!r}")
