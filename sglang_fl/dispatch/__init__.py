"""Layer 2 dispatch core: backends, per-op selection policy, per-instance binding, dispatch log."""
