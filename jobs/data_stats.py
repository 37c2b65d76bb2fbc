"""Print statistics of any shard directory: ``python jobs/data_stats.py DIR [--json]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.data.stats import main  # noqa: E402

if __name__ == "__main__":
    main()
