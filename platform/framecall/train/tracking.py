"""Moved to :mod:`framecall.tracking` (MLflow tracking is not training); kept until train/ imports it from there."""
from framecall.tracking import *  # noqa: F403
from framecall.tracking import (  # noqa: F401
    PACKAGES, RunLogger, default_tracking_uri, flatten, get_or_create_experiment, git_sha, package_versions, start_run,
)
