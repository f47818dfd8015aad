"""A real Ray head for the Ray-backend tests, and kernels from the Ray venv.

The head runs ``ray start --head --block`` from ``.venv-ray`` (built by
``scripts/setup_ray_env.sh``) on free loopback ports with a temp dir of its
own, in a process group of its own: stopping it ends that group and then
any process still naming the temp dir, by pid (never ``ray stop``, which
would end every Ray process on the machine). ``RayHead.add_node`` joins a
second node on this machine (``ray start --address``, with ports, a temp dir
and a process group of its own); stopping the head stops it too.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psutil

REPO = pathlib.Path(__file__).resolve().parents[2]
RAY_VENV = pathlib.Path(os.environ.get("NBRAY_RAY_VENV", REPO / ".venv-ray"))
RAY_PYTHON = RAY_VENV / "bin" / "python"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before in this process.

    A Ray head binds some of its ports only when its agents start, so a port
    chosen for a second node could otherwise be one the head has been given
    but not bound yet (the kernel returns a just-closed port again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for_ray_start(proc: subprocess.Popen[bytes], read_log: Callable[[], str], deadline: float,
                       what: str) -> None:
    """Until ``ray start`` logs that its runtime is up; raises if it exits or `deadline` passes."""
    while "Ray runtime started" not in read_log():
        if proc.poll() is not None:
            raise RuntimeError(f"ray start ({what}) exited {proc.returncode}: {read_log()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Ray {what} did not start in {START_TIMEOUT_S} s:\n{read_log()[-3000:]}")
        time.sleep(0.2)  # polling the log of a process we do not control


class RayHead:
    def __init__(self, num_cpus: int = 2, extra_env: dict[str, str] | None = None,
                 num_gpus: int | None = None) -> None:
        """``extra_env``: more environment for ``ray start`` and the readiness check (e.g. Ray's
        ``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN``)."""
        self.extra_env = dict(extra_env or {})
        self.nodes: list[RayNode] = []
        """Nodes joined with ``add_node``."""
        self.temp_dir = tempfile.mkdtemp(prefix="nbr-", dir="/tmp")
        self.port = free_port()
        self.dashboard_port = free_port()
        ports = {"--port": self.port, "--dashboard-port": self.dashboard_port,
                 "--ray-client-server-port": free_port(), "--node-manager-port": free_port(),
                 "--object-manager-port": free_port(), "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port(),
                 "--metrics-export-port": free_port()}
        args = [str(RAY_VENV / "bin" / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                "--num-cpus", str(num_cpus), "--temp-dir", self.temp_dir, "--disable-usage-stats",
                "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                "--min-worker-port", "0", "--max-worker-port", "0"]
        for flag, port in ports.items():
            args += [flag, str(port)]
        if num_gpus is not None:  # logical GPUs: Ray hands out their ids without a device behind them
            args += ["--num-gpus", str(num_gpus)]
        self.client_port = ports["--ray-client-server-port"]
        """Where Ray Client (``ray://127.0.0.1:PORT``) reaches this head."""
        self.log = open(os.path.join(self.temp_dir, "ray-start.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=self.start_env())
        self.address = f"127.0.0.1:{self.port}"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Until ``ray start`` says the head is up and a driver sees its CPUs."""
        deadline = time.monotonic() + START_TIMEOUT_S
        wait_for_ray_start(self.proc, self.read_log, deadline, "head")
        check = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                 "print(int(ray.cluster_resources().get('CPU', 0))); ray.shutdown()")
        last = ""
        while time.monotonic() < deadline:
            try:
                out = subprocess.run([str(RAY_PYTHON), "-c", check, self.address], capture_output=True, text=True,
                                     timeout=max(5.0, deadline - time.monotonic()),
                                     env={**os.environ, **self.extra_env})
            except subprocess.TimeoutExpired as exc:
                last = str(exc)
                break
            if out.returncode == 0 and out.stdout.strip() not in ("", "0"):
                return
            last = out.stderr[-2000:]
        raise TimeoutError(f"no driver could use the Ray head in {START_TIMEOUT_S} s: {last}\n"
                           f"{self.read_log()[-3000:]}")

    def start_env(self) -> dict[str, str]:
        """The environment of ``ray start`` for this head and its nodes. Without
        ``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0``, ``ray start`` answers SIGTERM
        by asking the GCS (stopping in the same breath) to drain the node, and
        waits 30 s for it before ending its processes."""
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
                   RAY_agent_register_timeout_ms="300000", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
        env.update(self.extra_env)
        return env

    def read_log(self) -> str:
        return pathlib.Path(self.temp_dir, "ray-start.log").read_text(errors="replace")

    def add_node(self, num_cpus: int, resources: dict[str, float]) -> RayNode:
        """A second node joined to this head (see ``RayNode``); stopped with the head."""
        node = RayNode(self, num_cpus, resources)
        self.nodes.append(node)
        try:
            node.wait_ready()
        except BaseException:
            node.stop()
            raise
        return node

    def processes(self) -> list[psutil.Process]:
        """Processes of this head and its nodes: their groups, and any naming one of their temp dirs."""
        return _processes({self.proc.pid, *(n.proc.pid for n in self.nodes)},
                          [self.temp_dir, *(n.temp_dir for n in self.nodes)])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        _stop(self.proc, self.processes, self.log, self.temp_dir)


class RayNode:
    """A second Ray node on this machine, joined to `head`: ``ray start
    --address HEAD --block`` with ports of its own (worker ports chosen by
    the OS), `resources` to tell it apart, and a temp dir of its own. Ray
    2.60 takes a temp dir per node (a joining node defaults to the head's),
    and sharing one would have each node's log monitor forward the other's
    worker output as well (it tails every worker log in its session's logs
    dir): every line would reach the driver twice. Runs in a process group
    of its own."""

    def __init__(self, head: RayHead, num_cpus: int, resources: dict[str, float]) -> None:
        self.head = head
        self.resources = dict(resources)
        self.temp_dir = tempfile.mkdtemp(prefix="nbr-n-", dir="/tmp")
        ports = {"--node-manager-port": free_port(), "--object-manager-port": free_port(),
                 "--dashboard-agent-listen-port": free_port(), "--dashboard-agent-grpc-port": free_port(),
                 "--runtime-env-agent-port": free_port(), "--metrics-export-port": free_port()}
        args = [str(RAY_VENV / "bin" / "ray"), "start", "--address", head.address, "--block",
                "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--resources", json.dumps(resources),
                "--temp-dir", self.temp_dir, "--disable-usage-stats", "--min-worker-port", "0",
                "--max-worker-port", "0"]
        for flag, port in ports.items():
            args += [flag, str(port)]
        self.log_path = pathlib.Path(self.temp_dir, "ray-start.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=head.start_env())
        self.node_id = ""
        """Ray's id of this node, once ``wait_ready`` saw it."""

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Until ``ray start`` says the node is up and the cluster lists it alive with its resources."""
        deadline = time.monotonic() + START_TIMEOUT_S
        wait_for_ray_start(self.proc, self.read_log, deadline, "node")
        check = ("import json, ray, sys, time\n"
                 "ray.init(address=sys.argv[1], log_to_driver=False)\n"
                 "wanted, deadline = json.loads(sys.argv[2]), time.monotonic() + float(sys.argv[3])\n"
                 "while time.monotonic() < deadline:\n"
                 "    for n in ray.nodes():\n"
                 "        if n['Alive'] and all(n['Resources'].get(k) == v for k, v in wanted.items()):\n"
                 "            print(n['NodeID'])\n"
                 "            sys.exit(0)\n"
                 "    time.sleep(0.2)\n"
                 "sys.exit(1)\n")
        left = max(5.0, deadline - time.monotonic())
        try:
            out = subprocess.run([str(RAY_PYTHON), "-c", check, self.head.address, json.dumps(self.resources),
                                  str(left)], capture_output=True, text=True, timeout=left + 30,
                                 env={**os.environ, **self.head.extra_env})
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"no driver could see the Ray node: {exc}\n{self.read_log()[-3000:]}") from None
        if out.returncode != 0:
            raise TimeoutError(f"the cluster did not list the Ray node alive in {START_TIMEOUT_S} s: "
                               f"{out.stderr[-2000:]}\n{self.read_log()[-3000:]}")
        self.node_id = out.stdout.strip().splitlines()[-1]

    def processes(self) -> list[psutil.Process]:
        """Processes of this node: its group, and any naming its temp dir."""
        return _processes({self.proc.pid}, [self.temp_dir])

    def stop(self) -> None:
        """End this node's processes (its raylet, agents and workers) and wait for them."""
        _stop(self.proc, self.processes, self.log, self.temp_dir)


def _stop(proc: subprocess.Popen[bytes], processes: Callable[[], list[psutil.Process]], log: Any,
          temp_dir: str) -> None:
    """SIGTERM the group of ``ray start`` `proc`, wait for `processes` to end
    (killing what is left at the deadline), then remove `temp_dir`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    # polling reaps ``ray start`` itself, which stays in its group as a zombie until then
    while time.monotonic() < deadline and (proc.poll() is None or processes()):
        time.sleep(0.2)  # processes exit on their own after SIGTERM
    for p in processes():
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes(), timeout=STOP_TIMEOUT_S)
    proc.wait(timeout=STOP_TIMEOUT_S)
    log.close()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _processes(groups: set[int], dirs: list[str]) -> list[psutil.Process]:
    """Processes in one of the process `groups`, or whose command line names one of `dirs`."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(p.pid) in groups or any(d in a for a in p.info["cmdline"] or [] for d in dirs):
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def write_kernelspec(directory: str) -> str:
    """A kernelspec named ``ray-venv`` that runs the Ray venv's Python; returns its kernels dir."""
    spec_dir = pathlib.Path(directory, "kernels", "ray-venv")
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [str(RAY_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (Ray venv)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return str(spec_dir.parent)


START_ATTEMPTS = 3


def start_ray_head(num_cpus: int = 2, extra_env: dict[str, str] | None = None,
                   num_gpus: int | None = None) -> RayHead:
    """A started head; a start that fails (``ray start`` gives up on its own
    processes when the machine is overloaded) is cleaned up and tried again."""
    errors = []
    for _ in range(START_ATTEMPTS):
        try:
            return RayHead(num_cpus=num_cpus, extra_env=extra_env, num_gpus=num_gpus)
        except (RuntimeError, TimeoutError) as exc:
            errors.append(str(exc)[-1500:])
    raise RuntimeError(f"the Ray head failed to start {START_ATTEMPTS} times:\n" + "\n---\n".join(errors))
