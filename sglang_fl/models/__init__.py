"""Models that sglang-fl can generate locally, without network access."""
