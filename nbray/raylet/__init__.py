"""The raylet: per-node scheduler, worker pool and object store owner."""
