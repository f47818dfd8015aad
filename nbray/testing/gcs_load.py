"""Simulated nodes that load a real GCS (benchmark harness).

A simulated node is one connection speaking the raylet's side of the real
protocol, and nothing else: it authenticates, registers a node, reports
its resources at a steady rate, answers the GCS's health checks, and
subscribes to the channels a raylet subscribes to (the resource view and
node changes). Hundreds of them share one asyncio loop in a process of
their own (``python -m nbray.testing.gcs_load``), driven by JSON lines on
stdin and answering on stdout; ``nbray.scripts.scale_gcs_load`` starts a
few such processes against one head and measures the GCS.

A *probe* is a resource change of one node (a resource named after the
probe appears in its report); every subscriber notes when a publication
carrying that name reaches it, which times a scheduling-relevant update
from the report leaving a node to the view arriving everywhere. The name
is found in the raw message bytes: parsing each 1,000-node view in every
simulated subscriber would measure this process, not the GCS.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from nbray._version import __version__
from nbray.protocol import common_pb2, gcs_pb2, method
from nbray.rpc.connection import HEADER, KIND_ERROR, KIND_ONEWAY, KIND_REPLY, KIND_REQUEST
from nbray.rpc.handshake import MAGIC, STATUS_OK, local_versions

_REGISTER = method("GcsService.RegisterNode")
_REPORT = method("GcsService.ReportResources")
_SUBSCRIBE = method("GcsService.Subscribe")
_HEALTH = method("RayletService.HealthCheck")
_PUBLISH = method("SubscriberService.Publish")

TOTAL = {"CPU": 1.0, "memory": float(1 << 30), "object_store_memory": float(64 << 20)}


def probe_name(seq: int) -> str:
    """The resource a probe adds to the changing node's report."""
    return f"probe_{seq:08d}"


def latency_summary(sent_at: float, arrivals: list[float], expected: int) -> dict[str, float]:
    """How a probe spread: seconds to the median and the last subscriber,
    and the share of `expected` subscribers it reached."""
    if expected <= 0:
        raise ValueError(f"expected subscribers must be positive, not {expected}")
    delays = sorted(a - sent_at for a in arrivals)
    if not delays:
        return {"reached": 0.0, "median_s": float("nan"), "last_s": float("nan")}
    return {"reached": len(delays) / expected, "median_s": delays[len(delays) // 2], "last_s": delays[-1]}


class SimulatedNode:
    """One node's connection to the GCS (raylet role), on an asyncio loop."""

    def __init__(self, index: int, address: str, token: bytes) -> None:
        self.index = index
        self.node_id = os.urandom(28)
        self.address = address
        self.token = token
        self.version = 0
        self.reports_sent = 0
        self.health_checks = 0
        self.publications = 0
        self.publication_bytes = 0
        self.probe_arrivals: dict[str, float] = {}
        self.watching: list[bytes] = []
        # Resources added to every report from now on (a probe's marker
        # stays, so a later periodic report cannot hide it).
        self.extra: dict[str, float] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._next_rid = 1
        self._calls: dict[int, asyncio.Future[bytes]] = {}
        self.closed_reason = ""

    async def connect(self) -> None:
        host, _, port = self.address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        nbray_version, py = local_versions()
        hello = common_pb2.Hello(nbray_version=nbray_version, python_version=py, role="raylet").SerializeToString()
        writer.write(MAGIC + self.token + HEADER.pack(len(hello), 0, 0, KIND_ONEWAY, 0) + hello)
        status = (await reader.readexactly(1))[0]
        if status != STATUS_OK:
            raise ConnectionError(f"the GCS at {self.address} refused the handshake (status {status})")
        body_len = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
        reply = common_pb2.HelloReply.FromString(await reader.readexactly(body_len))
        if reply.error:
            raise ConnectionError(reply.error)
        self._writer = writer
        asyncio.get_running_loop().create_task(self._read(reader))

    async def register(self) -> None:
        info = gcs_pb2.NodeInfo(
            node_id=self.node_id, node_ip="127.0.0.1", hostname="simulated", raylet_port=40_000 + self.index,
            object_store_bytes=int(TOTAL["object_store_memory"]), nbray_version=__version__,
            node_name=f"simulated-{self.index}", start_time_ms=int(time.time() * 1000))
        info.resources_total.update(TOTAL)
        await self._call(_REGISTER.id, gcs_pb2.RegisterNodeRequest(node=info))

    async def subscribe(self, channels: list[int]) -> None:
        for channel in channels:
            await self._call(_SUBSCRIBE.id, gcs_pb2.SubscribeRequest(channel=channel))  # type: ignore[arg-type]

    def report(self) -> None:
        """Send a resource report (one-way, as a raylet does)."""
        self.version += 1
        req = gcs_pb2.ReportResourcesRequest(node_id=self.node_id, version=self.version)
        req.total.update(TOTAL)
        req.available.update(TOTAL)
        req.available.update(self.extra)
        self._send(_REPORT.id, KIND_ONEWAY, 0, req.SerializeToString())
        self.reports_sent += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    # ---- frames -----------------------------------------------------------------------------------

    def _send(self, method_id: int, kind: int, rid: int, body: bytes) -> None:
        assert self._writer is not None, "not connected"
        self._writer.write(HEADER.pack(len(body), 0, method_id, kind, rid) + body)

    async def _call(self, method_id: int, request: Any) -> bytes:
        rid = self._next_rid
        self._next_rid += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._calls[rid] = future
        self._send(method_id, KIND_REQUEST, rid, request.SerializeToString())
        return await future

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                body_len, trailer_len, method_id, kind, rid = HEADER.unpack(await reader.readexactly(HEADER.size))
                body = await reader.readexactly(body_len + trailer_len) if body_len + trailer_len else b""
                if kind == KIND_REQUEST and method_id == _HEALTH.id:
                    self.health_checks += 1
                    self._send(method_id, KIND_REPLY, rid, b"")
                elif kind == KIND_ONEWAY and method_id == _PUBLISH.id:
                    self._on_publication(body)
                elif kind in (KIND_REPLY, KIND_ERROR) and rid in self._calls:
                    future = self._calls.pop(rid)
                    if kind == KIND_ERROR:
                        future.set_exception(RuntimeError(common_pb2.RpcError.FromString(body).message))
                    else:
                        future.set_result(body)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.closed_reason = f"{type(exc).__name__}: {exc}"
            for future in self._calls.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"the GCS closed the connection ({self.closed_reason})"))
            self._calls.clear()

    def _on_publication(self, body: bytes) -> None:
        now = time.monotonic()
        self.publications += 1
        self.publication_bytes += len(body)
        for name in self.watching:
            if name in body:
                self.probe_arrivals.setdefault(name.decode(), now)
        if self.watching:
            self.watching = [n for n in self.watching if n.decode() not in self.probe_arrivals]


class NodeGroup:
    """The simulated nodes of one process, and the commands that drive them."""

    def __init__(self, address: str, token: bytes, first_index: int, count: int) -> None:
        self.nodes = [SimulatedNode(first_index + i, address, token) for i in range(count)]
        self.report_period_s = 0.0
        self._reporter: asyncio.Task[None] | None = None

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """Run one command; returns its answer (raises for an unknown one)."""
        op = command["op"]
        if op == "register":
            await _gather_bounded([n.connect() for n in self.nodes])
            await _gather_bounded([n.register() for n in self.nodes])
            return {"registered": len(self.nodes)}
        if op == "report":
            self._set_report_rate(float(command["hz"]))
            return {}
        if op == "subscribe":
            channels = [int(c) for c in command["channels"]]
            await _gather_bounded([n.subscribe(channels) for n in self.nodes])
            return {"subscribed": len(self.nodes)}
        if op == "watch":
            for n in self.nodes:
                n.watching.append(command["name"].encode())
            return {}
        if op == "probe":
            changer = self.nodes[0]
            changer.extra = {command["name"]: 1.0}
            sent_at = time.monotonic()
            changer.report()
            return {"sent_at": sent_at}
        if op == "arrivals":
            name = command["name"]
            return {"arrivals": [n.probe_arrivals[name] for n in self.nodes if name in n.probe_arrivals]}
        if op == "counters":
            return {"reports_sent": sum(n.reports_sent for n in self.nodes),
                    "health_checks": sum(n.health_checks for n in self.nodes),
                    "publications": sum(n.publications for n in self.nodes),
                    "publication_bytes": sum(n.publication_bytes for n in self.nodes),
                    "closed": sum(1 for n in self.nodes if n.closed_reason)}
        raise ValueError(f"unknown command {op!r}")

    def _set_report_rate(self, hz: float) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        if hz > 0:
            self.report_period_s = 1.0 / hz
            self._reporter = asyncio.get_running_loop().create_task(self._report_forever())

    async def _report_forever(self) -> None:
        # Spread the nodes' reports evenly over each period, as independent
        # raylets would be, instead of sending them in one burst.
        step = self.report_period_s / len(self.nodes)
        while True:
            for n in self.nodes:
                if not n.closed_reason:
                    n.report()
                await asyncio.sleep(step)


async def _gather_bounded(coros: list[Any], limit: int = 64) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(c: Any) -> None:
        async with gate:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def serve(group: NodeGroup) -> None:
    """Answer JSON-line commands from stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        try:
            answer = await group.handle(command)
        except Exception as exc:  # reported to the coordinator, which fails the run
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for n in group.nodes:
        n.close()


def main() -> None:
    address, first_index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    token = bytes.fromhex(os.environ.pop("NBRAY_AUTH_TOKEN"))
    asyncio.run(serve(NodeGroup(address, token, first_index, count)))


if __name__ == "__main__":
    main()
