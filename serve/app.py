"""Ray Serve entry point: ``serve run serve/config.yaml``, or ``serve run serve.app:build_app
checkpoint=runs/train_poisson/best`` from the repository root. The application itself
lives in the library (``framecall.serve_app``) so that replicas import it from the
installed package, whatever their working directory."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.serve_app import app, build_app  # noqa: E402,F401
