"""Layer 2 dispatch core: backends and their registry, per-op selection policy, per-instance
binding, dispatch log."""
