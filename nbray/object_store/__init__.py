"""The per-node shared-memory object store (server in the raylet, client in workers)."""
