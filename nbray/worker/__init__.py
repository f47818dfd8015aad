"""The core worker: the library inside every driver and worker process."""
