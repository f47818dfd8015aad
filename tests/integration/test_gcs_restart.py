"""The cluster survives its GCS: raylets, drivers and workers reconnect to a
GCS started again from its storage, by hand or by the head's supervisor."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

import nbray
from nbray.exceptions import GetTimeoutError, RpcError
from nbray.object_ref import _core
from nbray.protocol import common_pb2, gcs_pb2
from nbray.rpc.blocking import BlockingClient
from nbray.testing import Cluster, wait_for_condition
from nbray.testing.chaos import gcs_child
from nbray.util.placement_group import placement_group
from tests.integration.test_gcs_persistence import relaunch_gcs

pytestmark = pytest.mark.timeout(180)

SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                 "health_check_timeout_ms": 1_000, "health_check_failure_threshold": 3,
                 "gcs_reregister_grace_ms": 4_000, "gcs_reconnect_timeout_ms": 60_000}


@nbray.remote(num_cpus=0)
class Keeper:
    def __init__(self) -> None:
        self.calls = 0

    def ping(self) -> int:
        self.calls += 1
        return self.calls

    def node(self) -> str:
        return nbray.get_runtime_context().get_node_id()


@nbray.remote(num_cpus=1)
def wait_for_file(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.01)
    return "finished"


@nbray.remote
def square(x: int) -> int:
    return x * x


def start_cluster(tmp_path: os.PathLike, **config: object) -> tuple[Cluster, object]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                      system_config={**SYSTEM_CONFIG, **config})
    try:
        worker = cluster.add_node(num_cpus=1, resources={"node_b": 1})
        cluster.connect(namespace="restart")
    except BaseException:
        cluster.shutdown(check_leaks=False)
        raise
    return cluster, worker


@pytest.fixture
def cluster_no_supervision(tmp_path: os.PathLike) -> Iterator[tuple[Cluster, object]]:
    cluster, worker = start_cluster(tmp_path, gcs_max_restarts_per_minute=0)
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


@pytest.fixture
def cluster_supervised(tmp_path: os.PathLike) -> Iterator[tuple[Cluster, object]]:
    cluster, worker = start_cluster(tmp_path)
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


def gcs_call(cluster: Cluster, method: str, request: object) -> object:
    assert cluster.head is not None
    with BlockingClient(cluster.head.gcs_address, cluster.head.token) as gcs:
        return gcs.call(f"GcsService.{method}", request)


def both_alive(cluster: Cluster) -> bool:
    alive = {n["NodeID"] for n in nbray.nodes() if n["Alive"]}
    return {n.node_id.hex() for n in cluster.list_all_nodes()} <= alive


def prepare(cluster: Cluster, tmp_path: os.PathLike) -> tuple[object, object, str]:
    """A detached named actor on the second node, a KV entry, and a task that runs until released."""
    keeper = Keeper.options(name="keeper", lifetime="detached", resources={"node_b": 0.1}).remote()
    assert nbray.get(keeper.ping.remote(), timeout=60) == 1
    gcs_call(cluster, "KVPut", gcs_pb2.KVPutRequest(ns="app", key=b"model", value=b"v1", overwrite=True))
    group = placement_group([{"node_b": 0.1}], name="group", lifetime="detached")
    assert group.wait(60)
    release = os.path.join(tmp_path, "release")
    running = wait_for_file.remote(release)
    return keeper, running, release


def check_recovered(cluster: Cluster, worker: object, keeper: object, running: object, release: str) -> None:
    wait_for_condition(lambda: both_alive(cluster), timeout=30, message="both nodes registered again")
    found = nbray.get_actor("keeper")
    assert nbray.get(found.ping.remote(), timeout=30) >= 2
    assert nbray.get(found.node.remote(), timeout=30) == worker.node_id.hex()  # type: ignore[attr-defined]
    reply = gcs_call(cluster, "KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"model"))
    assert reply.found and reply.value == b"v1"  # type: ignore[attr-defined]
    named = gcs_call(cluster, "GetNamedPlacementGroup",
                     gcs_pb2.GetNamedPlacementGroupRequest(name="group", namespace="restart"))
    assert named.found and named.placement_group.state == gcs_pb2.PlacementGroupInfo.CREATED  # type: ignore[attr-defined]
    assert nbray.get([square.remote(i) for i in range(4)], timeout=60) == [0, 1, 4, 9]
    fresh = Keeper.remote()
    assert nbray.get(fresh.ping.remote(), timeout=60) == 1
    open(release, "w").close()
    assert nbray.get(running, timeout=60) == "finished"


def test_reconnect_to_a_gcs_restarted_by_hand(cluster_no_supervision: tuple[Cluster, object],
                                              tmp_path: os.PathLike) -> None:
    cluster, worker = cluster_no_supervision
    head = cluster.head
    assert head is not None
    keeper, running, release = prepare(cluster, tmp_path)

    supervisor = head.processes["gcs"]
    supervisor.send_signal(signal.SIGKILL)  # its GCS dies with it
    supervisor.wait(timeout=10)
    core = _core[0]
    assert core is not None
    wait_for_condition(lambda: not core.gcs.connected, timeout=10, message="the driver saw the GCS go")

    # While the GCS is away, calls to existing actors go on; GCS calls time out with a typed error.
    assert nbray.get(keeper.ping.remote(), timeout=30) == 2  # type: ignore[attr-defined]
    with pytest.raises(GetTimeoutError, match="GCS"):
        core.gcs.call("KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"model"), timeout_s=0.3)

    restarted = relaunch_gcs(head.gcs_address, head.session_dir, cluster.config, head.token)
    try:
        check_recovered(cluster, worker, keeper, running, release)
        assert core.gcs.reconnections == 1
    finally:
        cluster.shutdown()  # while the GCS still runs: the driver's last calls need not wait for it
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=15)


@pytest.mark.timeout(240)
def test_supervisor_restarts_a_killed_gcs(cluster_supervised: tuple[Cluster, object],
                                          tmp_path: os.PathLike) -> None:
    cluster, worker = cluster_supervised
    keeper, running, release = prepare(cluster, tmp_path)
    first = gcs_child(cluster)
    killed_at = time.monotonic()
    os.kill(first, signal.SIGKILL)
    # Only wait: the supervisor starts a GCS again and everything reconnects.
    created = Keeper.remote()
    assert nbray.get(created.ping.remote(), timeout=60) == 1
    recovered_s = time.monotonic() - killed_at
    print(f"GCS SIGKILL -> first actor created after the restart: {recovered_s:.2f} s")
    assert gcs_child(cluster) != first
    assert cluster.head is not None and cluster.head.processes["gcs"].poll() is None
    check_recovered(cluster, worker, keeper, running, release)
    assert recovered_s < 15  # the target is a few seconds; this bound only catches a hang


def test_node_that_died_during_the_outage_is_declared_dead(cluster_no_supervision: tuple[Cluster, object],
                                                           tmp_path: os.PathLike) -> None:
    cluster, worker = cluster_no_supervision
    head = cluster.head
    assert head is not None
    keeper = Keeper.options(name="lost", lifetime="detached", resources={"node_b": 0.1}).remote()
    assert nbray.get(keeper.ping.remote(), timeout=60) == 1
    supervisor = head.processes["gcs"]
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(timeout=10)
    cluster.kill_raylet(worker)  # type: ignore[arg-type]

    restarted = relaunch_gcs(head.gcs_address, head.session_dir, cluster.config, head.token)
    try:
        def declared_dead() -> bool:
            states = {n["NodeID"]: n for n in nbray.nodes()}
            node = states.get(worker.node_id.hex())  # type: ignore[attr-defined]
            return node is not None and not node["Alive"] and "register again" in node["DeathReasonMessage"]

        wait_for_condition(declared_dead, timeout=30, message="the lost node declared dead")
        assert any(n["Alive"] and n["NodeID"] == head.node_id.hex() for n in nbray.nodes())

        def actor_dead() -> bool:
            actors = gcs_call(cluster, "GetAllActorInfo", gcs_pb2.GetAllActorInfoRequest()).actors  # type: ignore[attr-defined]
            return any(a.name == "lost" and a.state == gcs_pb2.ActorInfo.DEAD for a in actors)

        wait_for_condition(actor_dead, timeout=30, message="its actor handled as on node death")
        assert nbray.get(square.remote(3), timeout=60) == 9
        # The grace period is over, and this driver, which came back in time, still has its job.
        job_id = bytes.fromhex(nbray.get_runtime_context().get_job_id())
        jobs = gcs_call(cluster, "GetAllJobInfo", common_pb2.Empty()).jobs  # type: ignore[attr-defined]
        assert [j.is_dead for j in jobs if j.job_id == job_id] == [False]
    finally:
        cluster.shutdown()  # while the GCS still runs: the driver's last calls need not wait for it
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=15)


def test_gcs_gone_for_good_is_given_up_on_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBRAY_GCS_RECONNECT_TIMEOUT_MS", "1500")  # the driver's too
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                      system_config={**SYSTEM_CONFIG, "gcs_max_restarts_per_minute": 0,
                                     "gcs_reconnect_timeout_ms": 1_500})
    try:
        cluster.connect()
        head = cluster.head
        assert head is not None
        assert nbray.get(square.remote(2), timeout=60) == 4
        core = _core[0]
        assert core is not None
        head.processes["gcs"].send_signal(signal.SIGKILL)
        head.processes["gcs"].wait(timeout=10)
        raylet = head.processes["raylet"]
        wait_for_condition(lambda: raylet.poll() is not None, timeout=30, message="the raylet gave up and exited")
        with open(os.path.join(head.session_dir, "logs", f"raylet-{head.node_id.hex()[:8]}.err")) as f:
            assert "GCS unreachable" in f.read()
        wait_for_condition(lambda: bool(core.gcs.gave_up_reason), timeout=30, message="the driver gave up")
        with pytest.raises(RpcError, match="unreachable") as caught:
            core.gcs.call("KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"k"), timeout_s=5)
        assert caught.value.code == "gcs_unavailable"
    finally:
        cluster.shutdown()
