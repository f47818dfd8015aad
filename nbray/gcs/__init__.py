"""The Global Control Store: cluster-wide tables and pubsub."""
