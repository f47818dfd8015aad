"""Injected RPC loss and delay: the transport hook, the GCS client's resend
path, and a cluster whose workload completes while replies are lost."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nbray
from nbray.common import config as config_module
from nbray.common.config import Config, set_config
from nbray.exceptions import RpcError
from nbray.gcs.client import GcsClient
from nbray.gcs.server import GcsServer
from nbray.protocol import gcs_pb2, method
from nbray.rpc.connection import Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.fault_injection import InjectedRpcFailure
from nbray.util import placement_group, remove_placement_group

pytestmark = pytest.mark.timeout(60)

KV_PUT = method("GcsService.KVPut")
KV_GET = method("GcsService.KVGet")


@pytest.fixture
def gcs() -> Iterator[tuple[GcsServer, list[str]]]:
    """A GCS on its own loop thread, counting the requests its handlers ran."""
    config = Config()
    config.gcs_storage = "memory://"
    with tempfile.TemporaryDirectory(prefix="nbray-fi-") as session_dir:
        server = GcsServer(host="127.0.0.1", port=0, config=config, token=os.urandom(32), session_dir=session_dir)
        handled: list[str] = []
        for name in ("KVPut", "KVGet", "AddJob"):
            real = getattr(server, "handle_" + name)

            def counting(conn: Any, req: Any, rid: int, real: Any = real, name: str = name) -> Any:
                handled.append(name)
                return real(conn, req, rid)

            server.dispatcher.register(method("GcsService." + name), counting)
        server.start()
        server.loop.start_thread()
        try:
            yield server, handled
        finally:
            server.loop.post(server.shutdown)
            server.loop.join(5)
            server.storage.close()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set this process's injection spec (connections made afterwards use it)."""
    monkeypatch.setattr(config_module, "_config", config_module.get_config())

    def install(failure: str = "", delay: str = "", seed: int = 0) -> Config:
        config = Config()
        config.testing_rpc_failure, config.testing_rpc_delay_ms, config.testing_rpc_seed = failure, delay, seed
        set_config(config)
        return config

    return install


def client(server: GcsServer, config: Config) -> tuple[GcsClient, EventLoop]:
    loop = EventLoop("fi-client")
    loop.start_thread()
    return GcsClient(loop, server.address, server.token, Dispatcher(), config, role="driver", reconnect=True), loop


def test_lost_request_never_reaches_the_handler(gcs: Any, faults: Any) -> None:
    server, handled = gcs
    gc, loop = client(server, faults("GcsService.KVGet=1:req"))
    try:
        start = time.monotonic()
        with pytest.raises(InjectedRpcFailure, match="request was dropped"):
            gc.conn.call_sync(KV_GET, gcs_pb2.KVGetRequest(ns="n", key=b"k"), timeout_s=10)
        assert time.monotonic() - start < 5 and handled == []
        assert not gc.conn.closed  # only that call failed
    finally:
        gc.close()
        loop.stop()


def test_lost_reply_after_the_handler_ran(gcs: Any, faults: Any) -> None:
    server, handled = gcs
    gc, loop = client(server, faults("GcsService.KVPut=1:resp"))
    try:
        with pytest.raises(InjectedRpcFailure, match="reply was dropped"):
            gc.conn.call_sync(KV_PUT, gcs_pb2.KVPutRequest(ns="n", key=b"k", value=b"v"), timeout_s=10)
        assert handled == ["KVPut"]
        assert gc.conn.call_sync(KV_GET, gcs_pb2.KVGetRequest(ns="n", key=b"k"), timeout_s=10).value == b"v"
    finally:
        gc.close()
        loop.stop()


def test_delay_holds_the_request_back(gcs: Any, faults: Any) -> None:
    server, _ = gcs
    gc, loop = client(server, faults(delay="GcsService.KVGet=200:250"))
    try:
        start = time.monotonic()
        gc.call("KVGet", gcs_pb2.KVGetRequest(ns="n", key=b"k"))
        assert time.monotonic() - start >= 0.2
        start = time.monotonic()
        gc.call("GetAllJobInfo")  # not named in the spec: no delay
        assert time.monotonic() - start < 0.2
    finally:
        gc.close()
        loop.stop()


def test_resent_kv_puts_keep_their_first_answer(gcs: Any, faults: Any) -> None:
    server, handled = gcs
    gc, loop = client(server, faults("GcsService.KVPut=0.5:req,resp", seed=3))
    try:
        for i in range(30):
            reply = gc.call("KVPut", gcs_pb2.KVPutRequest(ns="n", key=b"k%d" % i, value=b"v%d" % i))
            assert reply.added, i  # a resend after a lost reply still hears "added"
        assert handled.count("KVPut") > 30  # some replies were lost and their requests resent
        assert server.kv.keys("n", b"") and all(server.kv.get("n", b"k%d" % i) == b"v%d" % i for i in range(30))
    finally:
        gc.close()
        loop.stop()


def test_add_job_is_never_sent_twice(gcs: Any, faults: Any) -> None:
    server, handled = gcs
    gc, loop = client(server, faults("GcsService.AddJob=1:resp"))
    try:
        with pytest.raises(RpcError, match="may or may not have taken effect"):
            gc.call("AddJob", gcs_pb2.AddJobRequest(job=gcs_pb2.JobInfo()))
        assert handled == ["AddJob"] and len(server.jobs) == 1
    finally:
        gc.close()
        loop.stop()


FAILURES = ("GcsService.RegisterActor=0.2:resp;GcsService.KVPut=0.2:resp;"
            "GcsService.CreatePlacementGroup=0.2:resp")
DELAYS = "RayletService.RequestWorkerLease=0:20"


def _workload(rounds: int) -> None:
    @nbray.remote
    def square(x: int) -> int:
        return x * x

    @nbray.remote(num_cpus=0)
    class Counter:
        def __init__(self, start: int) -> None:
            self.n = start

        def add(self, k: int) -> int:
            self.n += k
            return self.n

    from nbray.api import core_or_init

    gcs = core_or_init().gcs
    for r in range(rounds):
        assert nbray.get([square.remote(i) for i in range(10)], timeout=60) == [i * i for i in range(10)]
        counters = [Counter.remote(10 * i) for i in range(4)]
        assert nbray.get([c.add.remote(1) for c in counters], timeout=60) == [10 * i + 1 for i in range(4)]
        named = Counter.options(name=f"named-{r}").remote(100)
        assert nbray.get(nbray.get_actor(f"named-{r}").add.remote(5), timeout=60) == 105
        for i in range(10):
            reply = gcs.call("KVPut", gcs_pb2.KVPutRequest(ns="fi", key=b"%d-%d" % (r, i), value=b"%d" % i))
            assert reply.added
        keys = gcs.call("KVKeys", gcs_pb2.KVKeysRequest(ns="fi", prefix=b"%d-" % r)).keys
        assert sorted(keys) == sorted(b"%d-%d" % (r, i) for i in range(10))
        pg = placement_group([{"CPU": 1}], name=f"pg-{r}")
        assert pg.wait(30)
        assert nbray.get(square.options(placement_group=pg).remote(7), timeout=60) == 49
        remove_placement_group(pg)
        for c in [*counters, named]:
            nbray.kill(c)
    assert len(nbray.util.placement_group_table()) >= rounds


def _run_with_faults(monkeypatch: pytest.MonkeyPatch, rounds: int, seed: int) -> None:
    monkeypatch.setenv("NBRAY_TESTING_RPC_FAILURE", FAILURES)
    monkeypatch.setenv("NBRAY_TESTING_RPC_DELAY_MS", DELAYS)
    monkeypatch.setenv("NBRAY_TESTING_RPC_SEED", str(seed))
    from tests.conftest import _start, _stop

    _, pids = _start(num_cpus=2)
    try:
        assert config_module.get_config().testing_rpc_failure == FAILURES
        _workload(rounds)
    finally:
        _stop(pids)


def test_cluster_workload_completes_with_lost_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    _run_with_faults(monkeypatch, rounds=2, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_cluster_workload_completes_with_lost_replies_seeded(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    _run_with_faults(monkeypatch, rounds=6, seed=seed)


def test_raylet_bundle_handlers_twice(ray_start: Any) -> None:
    """PrepareBundles / CommitBundles / CancelBundles / ReturnWorker resent
    (the GCS retries a group): resources are held and freed once."""
    from nbray.api import core_or_init
    from nbray.protocol import raylet_pb2

    raylet = core_or_init().raylet

    def rpc(name: str, req: Any) -> Any:
        return raylet.call_sync(method("RayletService." + name), req, 10)

    def available_cpu() -> float:
        return rpc("GetNodeStats", raylet_pb2.GetNodeStatsRequest()).available["CPU"]

    before = available_cpu()
    bundle = raylet_pb2.BundleSpec(placement_group_id=b"p" * 18, bundle_index=0)
    bundle.resources["CPU"] = 1
    prepare = raylet_pb2.PrepareBundlesRequest(bundles=[bundle])
    assert rpc("PrepareBundles", prepare).success and rpc("PrepareBundles", prepare).success
    assert available_cpu() == before - 1
    commit = raylet_pb2.BundlesRequest(bundles=[bundle])
    assert rpc("CommitBundles", commit) == rpc("CommitBundles", commit)
    assert available_cpu() == before - 1
    cancel = raylet_pb2.CancelBundlesRequest(placement_group_id=b"p" * 18)
    assert rpc("CancelBundles", cancel) == rpc("CancelBundles", cancel)
    assert available_cpu() == before
    gone = raylet_pb2.ReturnWorkerRequest(lease_id=10**9)
    assert rpc("ReturnWorker", gone) == rpc("ReturnWorker", gone)
    assert available_cpu() == before
