"""The paper's method: frame heads, frame losses, exact decoding (all on the sub-frame axis)."""
