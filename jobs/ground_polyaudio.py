"""PolyAudio's temporal-grounding and counting items answered by a frame head over the joined clips.

    python jobs/make_polyaudio.py --split train --per-task 600 tasks='[temporal_grounding, counting]' --output runs/data/pg_train
    python jobs/make_polyaudio.py --split bench --per-task 80 tasks='[temporal_grounding, counting]' --output runs/data/pg_bench
    python jobs/ground_polyaudio.py convert --train runs/data/pg_train --bench runs/data/pg_bench --output runs/data/pg_frames
    python jobs/train_poisson.py --data runs/data/pg_frames --output runs/pg_poisson data.make_if_missing=false
    python jobs/ground_polyaudio.py score --checkpoint runs/pg_poisson/best --data runs/data/pg_frames
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.polyaudio.grounding import main  # noqa: E402

if __name__ == "__main__":
    main()
