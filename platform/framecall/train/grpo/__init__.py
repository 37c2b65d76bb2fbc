"""GRPO on PolyAudio: advantage/KL/policy-loss estimators (:mod:`.algos`) and rewards (:mod:`.rewards`),
each a pure function registered by name and picked by a config string."""
