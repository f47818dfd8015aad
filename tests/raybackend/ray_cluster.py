"""A real Ray head for the Ray-backend tests, and kernels from the Ray venv.

The head runs ``ray start --head --block`` from ``.venv-ray`` (built by
``scripts/setup_ray_env.sh``) on free loopback ports with a temp dir of its
own, in a process group of its own: stopping it ends that group and then
any process still naming the temp dir, by pid (never ``ray stop``, which
would end every Ray process on the machine).
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

import psutil

REPO = pathlib.Path(__file__).resolve().parents[2]
RAY_VENV = pathlib.Path(os.environ.get("NBRAY_RAY_VENV", REPO / ".venv-ray"))
RAY_PYTHON = RAY_VENV / "bin" / "python"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    def __init__(self, num_cpus: int = 2, extra_env: dict[str, str] | None = None,
                 num_gpus: int | None = None) -> None:
        """``extra_env``: more environment for ``ray start`` and the readiness check (e.g. Ray's
        ``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN``)."""
        self.extra_env = dict(extra_env or {})
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
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
                   RAY_agent_register_timeout_ms="300000")
        env.update(self.extra_env)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env)
        self.address = f"127.0.0.1:{self.port}"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Until ``ray start`` says the head is up and a driver sees its CPUs."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in self.read_log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.read_log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray head did not start in {START_TIMEOUT_S} s:\n{self.read_log()[-3000:]}")
            time.sleep(0.2)  # polling the log of a process we do not control
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

    def read_log(self) -> str:
        return pathlib.Path(self.temp_dir, "ray-start.log").read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """Processes of this head: its group, and any naming its temp dir."""
        out = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getpgid(p.pid) == self.proc.pid or any(self.temp_dir in a for a in p.info["cmdline"] or []):
                    out.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return out

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and self.processes():
            time.sleep(0.2)  # processes exit on their own after SIGTERM
        for p in self.processes():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(self.processes(), timeout=STOP_TIMEOUT_S)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


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
