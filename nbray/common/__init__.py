"""Pieces shared by every nbray process: ids, configuration, serialization."""
