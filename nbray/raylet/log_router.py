"""Collects worker stdout/stderr on a node and publishes it, tagged by task.

Every worker's fd 1 and 2 are Unix sockets to this router. Before and after
each task the worker writes a marker line (``MARKER`` followed by fields)
naming the task now running, so the router attributes each following line
to that task: its job, name and the notebook cell that started it. Lines
are appended to per-worker log files and published through the GCS in
small batches to the drivers of the job.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from nbray.protocol import gcs_pb2
from nbray.raylet.zygote import LOG_PREFACE
from nbray.rpc.auth import tokens_equal
from nbray.rpc.eventloop import EventLoop

logger = logging.getLogger(__name__)

MARKER = "\x00nbray-task\x00"
MAX_LINE_BYTES = 64 * 1024


def format_marker(job_hex: str, task_hex: str, name: str, context_tag: str, actor_name: str) -> str:
    fields = [job_hex, task_hex, name, context_tag, actor_name]
    return MARKER + "\x1f".join(f.replace("\n", " ").replace("\x1f", " ") for f in fields) + "\n"


class _Stream:
    __slots__ = ("sock", "startup_token", "is_err", "buf", "authed", "job_id", "task_id",
                 "task_name", "context_tag", "actor_name", "log_file")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.startup_token = 0
        self.is_err = False
        self.buf = b""
        self.authed = False
        self.job_id = b""
        self.task_id = b""
        self.task_name = ""
        self.context_tag = ""
        self.actor_name = ""
        self.log_file: Any = None


class LogRouter:
    def __init__(
        self,
        loop: EventLoop,
        socket_path: str,
        token: bytes,
        log_dir: str,
        node_ip: str,
        publish: Callable[[gcs_pb2.LogBatch], None],
        pid_of: Callable[[int], int],
        *,
        flush_interval_s: float = 0.02,
        batch_max_bytes: int = 256 * 1024,
    ) -> None:
        self.loop = loop
        self.socket_path = socket_path
        self.token = token
        self.log_dir = log_dir
        self.node_ip = node_ip
        self.publish = publish
        self.pid_of = pid_of
        self.flush_interval_s = flush_interval_s
        self.batch_max_bytes = batch_max_bytes
        self._batch = gcs_pb2.LogBatch()
        self._batch_bytes = 0
        self._flush_timer: Any = None
        self._streams: dict[int, _Stream] = {}
        try:
            os.unlink(socket_path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self.listener.listen(256)
        self.listener.setblocking(False)

    def start(self) -> None:
        self.loop.add_reader(self.listener, self._on_accept)

    def close(self) -> None:
        self.flush()
        self.loop.remove(self.listener)
        self.listener.close()
        for stream in list(self._streams.values()):
            self._close_stream(stream)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass

    def _on_accept(self, mask: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            stream = _Stream(sock)
            self._streams[sock.fileno()] = stream
            self.loop.add_reader(sock, functools.partial(self._on_stream_event, stream))

    def _close_stream(self, stream: _Stream) -> None:
        if stream.buf and stream.authed:
            self._emit(stream, stream.buf.decode("utf-8", "replace"))
            stream.buf = b""
        self._streams.pop(stream.sock.fileno(), None)
        self.loop.remove(stream.sock)
        stream.sock.close()
        if stream.log_file is not None:
            stream.log_file.close()

    def _on_stream_event(self, stream: _Stream, mask: int) -> None:
        self._on_readable(stream)

    def _on_readable(self, stream: _Stream) -> bool:
        """Read once from a worker stream; False when nothing was there."""
        try:
            data = stream.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._close_stream(stream)
            self.flush()
            return False
        stream.buf += data
        if not stream.authed:
            if len(stream.buf) < LOG_PREFACE.size:
                return True
            token, startup_token, kind = LOG_PREFACE.unpack_from(stream.buf)
            if not tokens_equal(token, self.token):
                self._close_stream(stream)
                return False
            stream.authed = True
            stream.startup_token = startup_token
            stream.is_err = kind == 2
            stream.buf = stream.buf[LOG_PREFACE.size :]
            suffix = "err" if stream.is_err else "out"
            path = os.path.join(self.log_dir, f"worker-{startup_token}.{suffix}")
            stream.log_file = open(path, "ab", buffering=0)
        self._consume(stream)
        return True

    def _consume(self, stream: _Stream) -> None:
        buf = stream.buf
        if b"\n" not in buf:
            if len(buf) > MAX_LINE_BYTES:  # a huge line without newline: emit as is
                stream.buf = b""
                self._write_and_emit(stream, buf)
            return
        head, _, tail = buf.rpartition(b"\n")
        stream.buf = tail
        text = head + b"\n"
        marker = MARKER.encode()
        if marker not in text:
            self._write_and_emit(stream, text)
            return
        pending = b""
        for line in text.splitlines(keepends=True):
            if line.startswith(marker):
                if pending:
                    self._write_and_emit(stream, pending)
                    pending = b""
                self._apply_marker(stream, line[len(marker) :].rstrip(b"\n").decode("utf-8", "replace"))
            else:
                pending += line
        if pending:
            self._write_and_emit(stream, pending)

    def _apply_marker(self, stream: _Stream, payload: str) -> None:
        fields = payload.split("\x1f")
        fields += [""] * (5 - len(fields))
        job_hex, task_hex, name, context_tag, actor_name = fields[:5]
        stream.job_id = bytes.fromhex(job_hex) if job_hex else b""
        stream.task_id = bytes.fromhex(task_hex) if task_hex else b""
        stream.task_name = name
        stream.context_tag = context_tag
        stream.actor_name = actor_name

    def _write_and_emit(self, stream: _Stream, data: bytes) -> None:
        if stream.log_file is not None:
            try:
                stream.log_file.write(data)
            except OSError:
                pass
        self._emit(stream, data.decode("utf-8", "replace"))

    def _emit(self, stream: _Stream, text: str) -> None:
        entry = self._batch.entries.add()
        entry.job_id = stream.job_id
        entry.task_id = stream.task_id
        entry.task_name = stream.task_name
        entry.context_tag = stream.context_tag
        entry.actor_name = stream.actor_name
        entry.is_err = stream.is_err
        entry.pid = self.pid_of(stream.startup_token)
        entry.node_ip = self.node_ip
        entry.text = text
        self._batch_bytes += len(text)
        if self._batch_bytes >= self.batch_max_bytes:
            self.flush()
        elif self._flush_timer is None:
            # Publish once this loop iteration has read what is available.
            self._flush_timer = True
            self.loop.add_end_of_iteration_hook(self.flush)

    def drain(self) -> None:
        """Read everything the workers have written so far, then publish."""
        for stream in list(self._streams.values()):
            for _ in range(64):
                if not self._on_readable(stream):
                    break
        self.flush()

    def flush(self) -> None:
        self._flush_timer = None
        if not self._batch.entries:
            return
        batch, self._batch = self._batch, gcs_pb2.LogBatch()
        self._batch_bytes = 0
        try:
            self.publish(batch)
        except Exception:
            logger.exception("publishing worker output failed")
