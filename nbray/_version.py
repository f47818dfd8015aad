"""Version of nbray; compared at every connection handshake."""

__version__ = "0.1.0"
