"""The `nbray memory` report, from entries to text (pure logic)."""

import datetime

import pytest

from nbray._private.memory_report import (
    ReferenceEntry,
    StoreStats,
    entries_from_rows,
    format_report,
    format_size,
    sort_entries,
    summarize,
)

NOW = datetime.datetime(2025, 1, 2, 3, 4, 5)


def entry(oid, size, kind="LOCAL_REFERENCE", pid=10, ip="10.0.0.1", node="n1", site="disabled"):
    return ReferenceEntry(object_id=oid, size_bytes=size, reference_type=kind, pid=pid, ip=ip, node_id=node,
                          process_type="DRIVER", owner="10.0.0.1 pid 10 (DRIVER)", call_site=site,
                          task_status="FINISHED")


STORE = StoreStats(node_id="n1", used_bytes=3 * 2**20, capacity_bytes=100 * 2**20, num_objects=2)


def test_sizes_in_decimal_units():
    assert format_size(1234, "B") == "1234 B"
    assert format_size(1500, "KB") == "1.50 KB"
    assert format_size(2_500_000, "MB") == "2.50 MB"
    assert format_size(3 * 10**9, "GB") == "3.00 GB"


def test_summary_counts_references_per_type_and_objects_once():
    entries = [entry("a", 100), entry("a", 100, kind="USED_BY_PENDING_TASK", pid=11), entry("b", 5, "ACTOR_HANDLE")]
    s = summarize(entries)
    assert s["LOCAL_REFERENCE"] == (1, 100)
    assert s["USED_BY_PENDING_TASK"] == (1, 100)
    assert s["ACTOR_HANDLE"] == (1, 5)
    assert s["PINNED_IN_MEMORY"] == (0, 0)
    assert s["total"] == (2, 105)  # "a" is one object held twice


def test_sort_orders():
    entries = [entry("a", 1, "PINNED_IN_MEMORY", pid=3), entry("b", 9, "ACTOR_HANDLE", pid=2),
               entry("c", 5, "LOCAL_REFERENCE", pid=1)]
    assert [e.object_id for e in sort_entries(entries, "OBJECT_SIZE")] == ["b", "c", "a"]
    assert [e.object_id for e in sort_entries(entries, "REFERENCE_TYPE")] == ["b", "c", "a"]
    assert [e.object_id for e in sort_entries(entries, "PID")] == ["c", "b", "a"]


def test_report_groups_by_node_address_and_lists_references():
    entries = [entry("aa", 2000), entry("bb", 30, ip="10.0.0.2", node="n2", pid=20)]
    text = format_report(entries, [STORE], units="KB", now=NOW)
    assert text.startswith("======== Object references status: 2025-01-02 03:04:05 ========")
    assert "--- Summary for node address: 10.0.0.1 ---" in text
    assert "--- Object references for node address: 10.0.0.2 ---" in text
    row = next(line for line in text.splitlines() if line.endswith("aa"))
    assert row.split() == ["10.0.0.1", "10", "Driver", "10.0.0.1", "pid", "10", "(DRIVER)", "disabled", "FINISHED",
                           "2.00", "KB", "LOCAL_REFERENCE", "aa"]
    assert "NBRAY_RECORD_REF_CREATION_SITES=1" in text
    assert "Plasma memory usage 3 MiB, 2 objects, 3.0% full" in text


def test_nodes_sharing_an_address_are_told_apart():
    text = format_report([entry("aa", 1, node="node-one"), entry("bb", 1, node="node-two")], [], now=NOW)
    assert "--- Summary for node address: 10.0.0.1 (node node-one) ---" in text
    assert "--- Summary for node address: 10.0.0.1 (node node-two) ---" in text


def test_group_by_call_site_wrap_and_limit():
    site = "(put object) /home/user/project/a/very/long/path/to/the/notebook_module.py:12:<module>"
    entries = [entry("aa", 5, site=site), entry("bb", 7, site=site), entry("cc", 1, site="(task call) x.py:1:f")]
    text = format_report(entries, [], group_by="STACK_TRACE", num_entries=1, now=NOW)
    assert f"--- Summary for call site: {site} ---" in text
    assert "Display 1 entries per group" in text
    assert "bb" in text and not any(line.endswith("aa") for line in text.splitlines())  # largest only
    wrapped = [line for line in text.splitlines() if line.endswith("bb")][0]
    assert site not in wrapped  # wrapped onto more lines
    unwrapped = format_report(entries, [], group_by="STACK_TRACE", line_wrap=False, now=NOW)
    assert any(site in line and line.endswith("bb") for line in unwrapped.splitlines())
    assert "NBRAY_RECORD_REF_CREATION_SITES" not in text


def test_stats_only_and_empty():
    assert format_report([entry("aa", 1)], [STORE], stats_only=True).startswith(
        "--- Aggregate object store stats across all nodes ---")
    assert "No object references" in format_report([], [], now=NOW)


def test_spilling_shows_when_it_happened():
    spilled = StoreStats(node_id="n1", used_bytes=0, capacity_bytes=1, num_objects=0, spilled_bytes=5 * 2**20,
                         spilled_objects=3, restored_objects=1)
    assert "Spilled 5 MiB, 3 objects; restored 1 objects" in format_report([], [spilled], stats_only=True)


@pytest.mark.parametrize("option", [{"group_by": "OWNER"}, {"sort_by": "SIZE"}, {"units": "KiB"}])
def test_bad_options_name_the_valid_ones(option):
    with pytest.raises(ValueError, match="choose one of"):
        format_report([], [], **option)


def test_rows_from_the_state_api():
    rows = [
        {"object_id": "aa", "object_size": 0, "reference_type": "LOCAL_REFERENCE", "pid": 7, "ip": "1.2.3.4",
         "node_id": "n", "type": "WORKER", "owner_worker_id": "ff01", "call_site": "disabled",
         "task_status": "PENDING"},
        {"object_id": "aa", "object_size": 4096, "reference_type": "LOCAL_REFERENCE", "pid": 8, "ip": "1.2.3.4",
         "node_id": "n", "type": "DRIVER", "owner_worker_id": "ff01", "call_site": "", "task_status": "FINISHED"},
    ]
    borrowed, owned = entries_from_rows(rows, {"ff01": "1.2.3.4 pid 8 (DRIVER)"})
    assert borrowed.size_bytes == 4096  # a borrower learns the size from the owner's row
    assert borrowed.owner == owned.owner == "1.2.3.4 pid 8 (DRIVER)"
    assert owned.call_site == "disabled" and borrowed.process_type == "WORKER"
