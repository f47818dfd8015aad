"""``python -m nbray.scripts.scale_gcs_load --nodes 1000``: a real GCS under
the load of many simulated nodes (nbray/testing/gcs_load.py).

Starts a head (GCS and one raylet) and a few processes of simulated nodes,
then measures, printing JSON:

* the GCS's CPU per resource report, first with nobody subscribed to the
  resource view (handling reports and health checks only), then with every
  node subscribed as raylets are (the view is broadcast to all of them);
* the latency of a resource change of one node reaching every subscriber
  (median and last), over a few probes;
* the GCS's memory, and how many nodes it declared dead meanwhile (a node
  whose health checks were not answered in time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from nbray.protocol import gcs_pb2
from nbray.testing import Cluster, wait_for_condition
from nbray.testing.gcs_load import latency_summary, probe_name
from nbray.testing.process_memory import children_by_parent, cpu_seconds, memory_of

MIB = 1024 * 1024


class Groups:
    """The processes of simulated nodes, driven by JSON lines."""

    def __init__(self, address: str, token: bytes, nodes: int, processes: int) -> None:
        env = dict(os.environ, NBRAY_AUTH_TOKEN=token.hex())
        per = -(-nodes // processes)
        self.sizes = [min(per, nodes - i * per) for i in range(processes) if nodes - i * per > 0]
        self.procs = [subprocess.Popen([sys.executable, "-m", "nbray.testing.gcs_load", address, str(i * per),
                                        str(size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
                      for i, size in enumerate(self.sizes)]

    def ask(self, command: dict[str, Any], only_first: bool = False) -> list[dict[str, Any]]:
        procs = self.procs[:1] if only_first else self.procs
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(json.dumps(command) + "\n")
            p.stdin.flush()
        answers = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"a simulated-node process exited (status {p.wait()})")
            answer = json.loads(line)
            if "error" in answer:
                raise RuntimeError(f"simulated nodes failed {command['op']}: {answer['error']}")
            answers.append(answer)
        return answers

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for answer in self.ask({"op": "counters"}):
            for k, v in answer.items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        for p in self.procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def gcs_tree(cluster: Cluster) -> list[int]:
    """The GCS process and everything under it."""
    assert cluster.head is not None
    root = cluster.head.processes["gcs"].pid
    tree = children_by_parent()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += tree.get(pid, [])
    return out


def measure_window(cluster: Cluster, groups: Groups, window_s: float, max_gcs_bytes: int) -> dict[str, float]:
    """GCS CPU and what the nodes sent and received over `window_s`."""
    pids = gcs_tree(cluster)
    cpu0, c0, t0 = sum(cpu_seconds(p) for p in pids), groups.counters(), time.monotonic()
    peak = 0
    while time.monotonic() - t0 < window_s:  # the window itself is the measurement
        peak = max(peak, sum(memory_of(p).pss for p in pids))
        if peak > max_gcs_bytes:
            raise RuntimeError(f"the GCS grew past {max_gcs_bytes // MIB} MiB; stopped to protect the machine")
        time.sleep(0.5)
    cpu1, c1, t1 = sum(cpu_seconds(p) for p in pids), groups.counters(), time.monotonic()
    reports = c1["reports_sent"] - c0["reports_sent"]
    return {"seconds": t1 - t0, "gcs_cpu_share": (cpu1 - cpu0) / (t1 - t0), "reports": reports,
            "gcs_cpu_per_report_us": (cpu1 - cpu0) / max(reports, 1) * 1e6,
            "health_checks": c1["health_checks"] - c0["health_checks"],
            "publications_received_per_s": (c1["publications"] - c0["publications"]) / (t1 - t0),
            "publication_mb_per_s": (c1["publication_bytes"] - c0["publication_bytes"]) / (t1 - t0) / 1e6,
            "gcs_peak_pss_mib": peak / MIB}


def probe(groups: Groups, seq: int, nodes: int, timeout_s: float) -> dict[str, float]:
    name = probe_name(seq)
    groups.ask({"op": "watch", "name": name})
    sent_at = groups.ask({"op": "probe", "name": name}, only_first=True)[0]["sent_at"]
    arrivals: list[float] = []

    def everyone() -> bool:
        arrivals[:] = [a for answer in groups.ask({"op": "arrivals", "name": name}) for a in answer["arrivals"]]
        return len(arrivals) >= nodes

    try:
        wait_for_condition(everyone, timeout=timeout_s, retry_interval_ms=50)
    except TimeoutError:
        pass  # reported as the share reached
    return latency_summary(sent_at, arrivals, nodes)


def run(nodes: int, processes: int, report_hz: float, window_s: float, probes: int,
        max_gcs_mib: int, system_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every figure, as a dict (see the module docstring)."""
    out: dict[str, Any] = {"simulated nodes": nodes, "processes": processes, "report rate per node (Hz)": report_hz}
    with Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 64 * MIB},
                 system_config=system_config) as cluster:
        assert cluster.head is not None
        groups = Groups(cluster.address, cluster.head.token, nodes, processes)
        try:
            began = time.perf_counter()
            groups.ask({"op": "register"})
            out["all registered (s)"] = time.perf_counter() - began
            groups.ask({"op": "report", "hz": report_hz})
            out["reports only"] = measure_window(cluster, groups, window_s, max_gcs_mib * MIB)
            groups.ask({"op": "subscribe", "channels": [gcs_pb2.RESOURCE_VIEW, gcs_pb2.NODE]})
            out["reports, every node subscribed"] = measure_window(cluster, groups, window_s,
                                                                   max_gcs_mib * MIB)
            results = [probe(groups, seq, nodes, timeout_s=30) for seq in range(probes)]
            out["resource change reaching every subscriber"] = {
                "probes": probes,
                "reached (min share)": min(r["reached"] for r in results),
                "median subscriber, median of probes (s)": statistics.median(r["median_s"] for r in results),
                "last subscriber, median of probes (s)": statistics.median(r["last_s"] for r in results),
                "last subscriber, worst probe (s)": max(r["last_s"] for r in results)}
            from nbray.rpc.blocking import BlockingClient

            with BlockingClient(cluster.address, cluster.head.token) as client:
                infos = client.call("GcsService.GetAllNodeInfo").nodes
            out["nodes declared dead meanwhile"] = sum(1 for n in infos if n.state == gcs_pb2.NodeInfo.DEAD)
            out["connections the GCS closed"] = groups.counters()["closed"]
        finally:
            groups.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.scale_gcs_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4, help="processes the simulated nodes share")
    parser.add_argument("--report-hz", type=float, default=1.0, help="resource reports per node per second")
    parser.add_argument("--window-s", type=float, default=10.0, help="length of each measured window")
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--max-gcs-mib", type=int, default=4096, help="stop if the GCS grows past this (PSS)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.processes < 1:
        parser.error("--nodes and --processes must be at least 1")
    figures = run(args.nodes, args.processes, args.report_hz, args.window_s, args.probes, args.max_gcs_mib)
    json.dump(figures, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
