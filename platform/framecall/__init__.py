"""framecall: frame-level internal tool use for audio LMs, and multi-audio reasoning, on Ray."""

__version__ = "0.1.0"
