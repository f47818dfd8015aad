"""Client mode (nbray://): a process outside the cluster drives it through
the client server and its own session process on the head."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import nbray
from nbray.exceptions import AuthenticationError, GetTimeoutError, TaskCancelledError, VersionMismatchError
from nbray.testing import Cluster, wait_for_condition

pytestmark = pytest.mark.timeout(120)

MB = 1024 * 1024


@pytest.fixture(scope="module")
def head() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "num_gpus": 1, "object_store_memory": 700 * MB, "ray_client_server_port": 0})
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def client(head: Cluster) -> Iterator[Any]:
    ctx = nbray.init(head.client_address)
    try:
        yield ctx
    finally:
        nbray.shutdown()


def session_pids(cluster: Cluster) -> set[int]:
    """Pids of the client server's session processes."""
    assert cluster.head is not None
    server = cluster.head.processes["client_server"].pid
    out = subprocess.run(["pgrep", "-P", str(server)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def run_client_script(cluster: Cluster, code: str, env: dict[str, str] | None = None,
                      timeout: float = 90) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, **(env or {}))
    full_env["NBRAY_CLIENT_ADDRESS"] = cluster.client_address
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@nbray.remote
def double(x: Any) -> Any:
    return x * 2


@nbray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n


# ---- the core API over a client -------------------------------------------------------------------


def test_tasks_objects_and_actors_through_a_client(client: Any) -> None:
    assert nbray.is_initialized()
    assert nbray.get(double.remote(21)) == 42
    assert nbray.get([double.remote(i) for i in range(20)]) == [2 * i for i in range(20)]
    ref = nbray.put({"a": np.arange(5)})
    assert nbray.get(ref)["a"].tolist() == [0, 1, 2, 3, 4]
    # a ref as an argument is resolved; nested in a list it stays a ref
    assert nbray.get(double.remote(nbray.put(np.arange(3)))).tolist() == [0, 2, 4]

    @nbray.remote
    def first(refs: list[Any]) -> Any:
        return nbray.get(refs[0])

    assert nbray.get(first.remote([nbray.put("inner")])) == "inner"
    counter = Counter.remote(10)
    assert nbray.get([counter.add.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    assert nbray.get(counter.add.options(name="add").remote(5)) == 20
    ready, not_ready = nbray.wait([double.remote(1), double.remote(2)], num_returns=2, timeout=30)
    assert len(ready) == 2 and not not_ready


def test_named_actor_get_actor_and_kill(client: Any) -> None:
    Counter.options(name="shared-counter", lifetime="detached").remote(100)
    handle = nbray.get_actor("shared-counter")
    assert nbray.get(handle.add.remote()) == 101
    nbray.kill(handle)
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(handle.add.remote())
    with pytest.raises(ValueError, match="no-such-actor"):
        nbray.get_actor("no-such-actor")


def test_errors_keep_their_type_and_timeouts_apply(client: Any) -> None:
    @nbray.remote
    def fail() -> None:
        raise KeyError("missing thing")

    with pytest.raises(KeyError, match="missing thing"):
        nbray.get(fail.remote())

    @nbray.remote
    def slow() -> int:
        import time

        time.sleep(30)
        return 1

    ref = slow.remote()
    with pytest.raises(GetTimeoutError):
        nbray.get(ref, timeout=0.2)
    nbray.cancel(ref, force=True)
    with pytest.raises((TaskCancelledError, nbray.exceptions.WorkerCrashedError)):
        nbray.get(ref, timeout=30)


def test_cluster_information_and_runtime_context(client: Any, head: Cluster) -> None:
    nodes = nbray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nbray.cluster_resources()["CPU"] == 2.0
    assert nbray.cluster_resources()["GPU"] == 1.0
    wait_for_condition(lambda: nbray.available_resources().get("CPU") == 2.0, timeout=10)
    ctx = nbray.get_runtime_context()
    assert ctx.get_job_id() and ctx.get_node_id() == nodes[0]["NodeID"]
    assert nbray.get_gpu_ids() == []

    @nbray.remote(num_gpus=1)
    def gpu_task() -> Any:
        return nbray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    ids, visible = nbray.get(gpu_task.remote())
    assert len(ids) == 1 and visible == str(ids[0])


def test_generators_stream_items(client: Any) -> None:
    @nbray.remote
    def count(n: int) -> Any:
        for i in range(n):
            yield i * i

    gen = count.remote(5)
    assert [nbray.get(r) for r in gen] == [0, 1, 4, 9, 16]
    gen2 = count.remote(3)
    ready, _ = nbray.wait([gen2], num_returns=1, timeout=30)
    assert ready == [gen2]
    assert nbray.get(next(gen2)) == 0


def test_placement_groups_from_a_client(client: Any) -> None:
    from nbray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}])
    assert nbray.get(pg.ready(), timeout=30) == pg
    assert pg.wait(10)
    remove_placement_group(pg)


def test_worker_output_reaches_the_client(client: Any) -> None:
    from nbray.object_ref import _core

    core = _core[0]
    seen: list[str] = []
    core.log_handler = lambda batch: seen.extend(line for e in batch.entries for line in e.text.splitlines())

    @nbray.remote
    def talk(i: int) -> int:
        print(f"line-from-task-{i}")
        return i

    nbray.get([talk.remote(i) for i in range(3)])
    core.flush_logs(5)
    assert {f"line-from-task-{i}" for i in range(3)} <= set(seen)


def test_large_values_are_chunked_both_ways(client: Any) -> None:
    big = np.random.default_rng(0).integers(0, 255, size=300 * MB, dtype=np.uint8)
    ref = nbray.put(big)
    back = nbray.get(ref)
    assert back.shape == big.shape and np.array_equal(back, big)
    # a large argument travels by reference; a large result comes back in chunks
    assert nbray.get(double.remote(big[: 64 * MB])).sum() == (big[: 64 * MB].astype(np.int64) * 2 % 256).sum()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_3_gib_array_round_trips(head: Cluster) -> None:
    code = """
        import os, numpy as np, nbray
        nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"])
        n = 3 * 1024**3
        a = np.empty(n, dtype=np.uint8)
        a[::4096] = 7
        ref = nbray.put(a)
        b = nbray.get(ref)
        assert b.nbytes == n and b[::4096].sum() == 7 * (n // 4096)
        print("OK")
    """
    big_head = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 4 * 1024**3, "ray_client_server_port": 0})
    try:
        result = run_client_script(big_head, code, timeout=580)
        assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
    finally:
        big_head.shutdown()


def test_functions_defined_in_main_are_shipped_by_value(head: Cluster) -> None:
    code = """
        import os, nbray
        nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"])
        SCALE = 7
        def helper(x):
            return x * SCALE
        @nbray.remote
        def work(x):
            return helper(x) + 1
        @nbray.remote
        class Box:
            def __init__(self, v): self.v = v
            def get(self): return helper(self.v)
        print("RESULT", nbray.get(work.remote(6)), nbray.get(Box.remote(2).get.remote()))
        nbray.shutdown()
    """
    result = run_client_script(head, code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT 43 14" in result.stdout


# ---- connection management ---------------------------------------------------------------------


def test_a_dropped_connection_resumes_with_everything_intact(client: Any) -> None:
    import concurrent.futures

    from nbray.object_ref import _core

    core = _core[0]
    counter = Counter.remote(0)
    assert nbray.get(counter.add.remote()) == 1
    kept = nbray.put(np.arange(1000))

    @nbray.remote
    def wait_for_file(path: str) -> str:
        import time

        while not os.path.exists(path):
            time.sleep(0.01)
        return "finished"

    gate = os.path.join(core.session_dir, f"gate-{os.getpid()}")
    pending = wait_for_file.remote(gate)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(nbray.get, pending, timeout=60)
        wait_for_condition(lambda: any(op.method.name == "Get" for op in list(core._outbox.values())),
                           timeout=10, message="the get is in flight")
        # cut the TCP connection under the blocked get, as a network blip would
        before = core.reconnects
        core._conn.sock.shutdown(socket.SHUT_RDWR)
        wait_for_condition(lambda: core.reconnects == before + 1, timeout=30, message="client reconnected")
        open(gate, "w").close()
        try:
            assert result.result(timeout=60) == "finished"  # the get that was cut off completes
        finally:
            os.unlink(gate)
    assert nbray.get(counter.add.remote()) == 2  # the actor survived, with its state
    assert nbray.get(kept).sum() == sum(range(1000))
    assert nbray.get(double.remote(4)) == 8


def test_a_session_ends_after_the_grace_period(tmp_path: Any) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "ray_client_server_port": 0},
                      system_config={"client_reconnect_grace_ms": 1500})
    try:
        from nbray.object_ref import _core
        from nbray.util.state import list_actors

        nbray.init(cluster.client_address)
        core = _core[0]
        actor = Counter.remote()
        assert nbray.get(actor.add.remote()) == 1
        sessions = session_pids(cluster)
        assert len(sessions) == 1
        # the client cannot come back: the session must give up after the grace period
        core._open = lambda first: (_ for _ in ()).throw(ConnectionError("network down"))
        core._conn.sock.shutdown(socket.SHUT_RDWR)
        wait_for_condition(lambda: not session_pids(cluster), timeout=30, message="session process exited")
        wait_for_condition(lambda: core._lost != "", timeout=30, message="client gave up")
        with pytest.raises(ConnectionError, match="could not be restored"):
            nbray.get(actor.add.remote())
        nbray.shutdown()
        # the session's driver ended its job: the actor it owned is gone
        nbray.init(address=cluster.address)
        wait_for_condition(lambda: all(a["state"] == "DEAD" for a in list_actors()), timeout=30)
        nbray.shutdown()
    finally:
        nbray.shutdown()
        cluster.shutdown()


def test_shutdown_ends_the_session_at_once(head: Cluster) -> None:
    before = session_pids(head)
    nbray.init(head.client_address)
    started = session_pids(head) - before
    assert len(started) == 1
    nbray.shutdown()
    wait_for_condition(lambda: not (session_pids(head) & started), timeout=30, message="session exited")


def test_two_clients_have_separate_sessions(head: Cluster) -> None:
    code = """
        import os, nbray
        nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"], namespace="other")
        @nbray.remote
        def ns():
            return nbray.get_runtime_context().namespace
        print("NS", nbray.get(ns.remote()))
    """
    nbray.init(head.client_address, namespace="mine")
    try:
        result = run_client_script(head, code)
        assert "NS other" in result.stdout, result.stderr[-3000:]

        @nbray.remote
        def ns() -> str:
            return nbray.get_runtime_context().namespace

        assert nbray.get(ns.remote()) == "mine"
    finally:
        nbray.shutdown()


def test_ctrl_c_in_get_cancels_the_cell_and_keeps_the_connection(head: Cluster) -> None:
    # The script interrupts itself (SIGINT, as Ctrl-C in a kernel) once its
    # main thread is blocked in get().
    code = """
        import os, signal, sys, threading, time, nbray
        from nbray.testing import wait_for_condition
        from nbray.worker import context
        nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"])
        context.current().context_tag = "cell:test:1"
        @nbray.remote
        def forever():
            while True:
                time.sleep(0.05)
        refs = [forever.remote() for _ in range(2)]
        main = threading.main_thread().ident
        def in_blocking_get():
            frame = sys._current_frames().get(main)
            names = set()
            while frame is not None:
                names.add(frame.f_code.co_name)
                frame = frame.f_back
            return "_interruptible" in names and "wait" in names
        def interrupt():
            wait_for_condition(in_blocking_get, timeout=30)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            nbray.get(refs)
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
        for r in refs:
            try:
                nbray.get(r, timeout=30)
            except (nbray.exceptions.TaskCancelledError, nbray.exceptions.WorkerCrashedError) as e:
                print("CANCELLED", type(e).__name__, flush=True)
        @nbray.remote
        def ok():
            return "still usable"
        print(nbray.get(ok.remote()), flush=True)
    """
    result = run_client_script(head, code)
    assert "INTERRUPTED" in result.stdout, result.stderr[-3000:]
    assert result.stdout.count("CANCELLED") == 2, result.stdout + result.stderr[-3000:]
    assert "still usable" in result.stdout


# ---- refusals ----------------------------------------------------------------------------------------


def test_a_wrong_token_is_refused(head: Cluster) -> None:
    with pytest.raises(AuthenticationError, match="refused the cluster token"):
        nbray.init(head.client_address, _auth_token="ab" * 32)
    assert not nbray.is_initialized()


def test_another_nbray_version_is_refused_naming_both(head: Cluster) -> None:
    code = """
        import os, nbray
        try:
            nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"])
        except Exception as e:
            print("ERROR", type(e).__name__, e)
    """
    result = run_client_script(head, code, env={"NBRAY_TESTING_VERSION_OVERRIDE": "9.9.9"})
    assert "VersionMismatchError" in result.stdout, result.stderr[-2000:]
    assert "9.9.9" in result.stdout and nbray.__version__ in result.stdout
    assert VersionMismatchError.__name__ == "VersionMismatchError"


def test_an_unreachable_client_server_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        nbray.init(f"nbray://127.0.0.1:{port}", _auth_token="ab" * 32)
    assert not nbray.is_initialized()
