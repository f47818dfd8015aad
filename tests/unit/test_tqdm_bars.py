"""tqdm_ray's pure logic: reports, the driver's bar table, lines, terminal drawing."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import pytest

from nbray.experimental import bar_display
from nbray.experimental.bar_display import BarDisplay, TerminalBars
from nbray.experimental.bar_state import (
    RAY_TQDM_MAGIC,
    Bar,
    BarBoard,
    BarChange,
    BarSource,
    BarState,
    ChangeKind,
    encode_report,
    erase,
    extract_reports,
    format_bar,
    format_interval,
    format_rate,
    plain_line_due,
    redraw,
)
from nbray.experimental.tqdm_ray import tqdm
from nbray.protocol import gcs_pb2

TASK = BarSource(task_name="work", pid=42, node_ip="127.0.0.1", context_tag="cell:a:1")


def _state(uuid: str = "u1", n: float = 0, total: float | None = 10, **kw: object) -> BarState:
    return BarState(uuid=uuid, n=n, total=total, **kw)  # type: ignore[arg-type]


# ---- reports on the wire ------------------------------------------------------------------------------


def test_a_report_round_trips_and_leaves_other_output_alone() -> None:
    state = _state(n=3, desc="load", unit="MB", position=1, pid=7, ip="10.0.0.2", elapsed_s=1.5)
    line = encode_report(state)
    assert line.endswith("\n") and line.count("\n") == 1 and RAY_TQDM_MAGIC in line
    reports, rest = extract_reports("before\n" + line + "after\n")
    assert reports == [state] and rest == "before\nafter\n"
    assert extract_reports("no bars here\n") == ([], "no bars here\n")


def test_a_report_after_a_partial_line_keeps_the_partial_text() -> None:
    reports, rest = extract_reports("half a line" + encode_report(_state(n=1)))
    assert [r.n for r in reports] == [1] and rest == "half a line"


def test_rays_own_report_format_is_read() -> None:
    # what Ray's tqdm_ray prints: no elapsed_s, "x" for the count
    line = ('{"__magic_token__": "__ray_tqdm_magic_token__", "x": 4, "pos": 0, "desc": "d", "total": 8, '
            '"ip": "1.2.3.4", "pid": 9, "uuid": "abc", "closed": false}\n')
    (state,) = extract_reports(line)[0]
    assert (state.uuid, state.n, state.total, state.unit, state.elapsed_s) == ("abc", 4, 8, "it", None)


def test_malformed_reports_are_dropped_not_printed() -> None:
    text = ('{"__magic_token__": "__ray_tqdm_magic_token__", "x": "many", "uuid": "u"}\n'
            '{"__magic_token__": "__ray_tqdm_magic_token__", "x": 1\n'
            f"mentions {RAY_TQDM_MAGIC} oddly\n"
            "kept\n")
    assert extract_reports(text) == ([], "kept\n")


# ---- the driver's table of bars -----------------------------------------------------------------------


def test_a_bar_opens_updates_and_closes_once() -> None:
    board = BarBoard(max_live_bars=10, closed_remembered=10)
    opened = board.apply(_state(n=0), TASK, 1.0)
    assert opened is not None and opened.kind is ChangeKind.OPENED
    updated = board.apply(_state(n=5), TASK, 2.0)
    assert updated is not None and updated.kind is ChangeKind.UPDATED
    assert (updated.bar.opened_s, updated.bar.updated_s, updated.bar.state.n) == (1.0, 2.0, 5)
    closed = board.apply(_state(n=10, closed=True), TASK, 3.0)
    assert closed is not None and closed.kind is ChangeKind.CLOSED and board.live_bars() == []
    assert board.apply(_state(n=10), TASK, 4.0) is None  # a late report does not reopen it


def test_a_bar_first_seen_closed_still_shows_its_final_state() -> None:
    board = BarBoard(max_live_bars=10, closed_remembered=10)
    change = board.apply(_state(n=10, closed=True), TASK, 1.0)
    assert change is not None and change.kind is ChangeKind.CLOSED and change.bar.state.n == 10


def test_bars_beyond_the_limit_are_counted_until_a_place_frees_up() -> None:
    board = BarBoard(max_live_bars=2, closed_remembered=10)
    for key in ("a", "b", "c"):
        board.apply(_state(key), TASK, 1.0)
    assert [b.key for b in board.live_bars()] == ["a", "b"] and board.hidden_count == 1
    board.apply(_state("a", closed=True), TASK, 2.0)
    change = board.apply(_state("c", n=3), TASK, 3.0)
    assert change is not None and change.kind is ChangeKind.OPENED
    assert [b.key for b in board.live_bars()] == ["b", "c"] and board.hidden_count == 0


def test_closed_bars_are_remembered_within_a_bound() -> None:
    board = BarBoard(max_live_bars=10, closed_remembered=1)
    board.apply(_state("a", closed=True), TASK, 1.0)
    board.apply(_state("b", closed=True), TASK, 1.0)
    assert board.apply(_state("b"), TASK, 2.0) is None
    assert board.apply(_state("a"), TASK, 2.0) is not None  # forgotten: the bound holds


def test_bars_of_one_process_are_drawn_together_by_position() -> None:
    other = BarSource(task_name="other", pid=43)
    board = BarBoard(max_live_bars=10, closed_remembered=10)
    board.apply(_state("inner", position=1), TASK, 1.0)
    board.apply(_state("elsewhere"), other, 1.0)
    board.apply(_state("outer", position=0), TASK, 1.0)
    assert [b.key for b in board.live_bars()] == ["outer", "inner", "elsewhere"]


# ---- lines ------------------------------------------------------------------------------------------------


def _bar(state: BarState, source: BarSource = TASK, opened_s: float = 0.0, updated_s: float = 0.0) -> Bar:
    return Bar(state, source, opened_s=opened_s, updated_s=updated_s, group=1, serial=1)


def test_a_line_shows_label_percentage_counts_and_rate() -> None:
    line = format_bar(_bar(_state(n=4, desc="load", elapsed_s=2.0)), now_s=0.0, width=100, ascii_only=True)
    assert line.startswith("(work pid=42) load:  40%|")
    assert line.endswith("| 4/10 [00:02<00:03, 2.00it/s]")
    assert "################" in line and len(line) <= 100


def test_a_driver_bar_has_no_prefix_and_an_open_bar_keeps_its_clock_running() -> None:
    driver = BarSource(on_driver=True)
    line = format_bar(_bar(_state(n=4, elapsed_s=2.0), driver, updated_s=10.0), now_s=13.0, width=100)
    assert line.startswith(" 40%|") and "[00:05<00:03, 2.00it/s]" in line


def test_unknown_totals_narrow_terminals_and_custom_formats() -> None:
    no_total = format_bar(_bar(_state(n=3, total=None, unit="rows", elapsed_s=1.0)), 0.0, 100)
    assert no_total == "(work pid=42) 3rows [00:01, 3.00rows/s]"
    narrow = format_bar(_bar(_state(n=4, desc="a long description")), 0.0, 30)
    assert len(narrow) == 30 and narrow.endswith(" 40% 4/10") and "|" not in narrow
    custom = _bar(_state(n=4, bar_format="{desc} {n_fmt} of {total_fmt} ({percentage:.0f}%)"))
    assert format_bar(custom, 0.0, 100) == "(work pid=42)  4 of 10 (40%)"
    unknown_field = _bar(_state(n=4, bar_format="{postfix}"))
    assert "4/10" in format_bar(unknown_field, 0.0, 100)


def test_times_and_rates_read_like_tqdms() -> None:
    assert (format_interval(5), format_interval(65), format_interval(3725)) == ("00:05", "01:05", "1:02:05")
    assert format_rate(10, 4.0, "it") == "2.50it/s"
    assert format_rate(1, 4.0, "it") == "4.00s/it"
    assert format_rate(0, 4.0, "it") == "?it/s"


# ---- terminal drawing ------------------------------------------------------------------------------------


def test_redraw_replaces_the_bar_area_in_place() -> None:
    assert redraw([], ["a", "b"], 0) == "\r\x1b[2Ka\n\x1b[2Kb\n\x1b[J"
    # three lines were drawn: go up three, keep the closed bar's last line, draw the open one
    assert redraw(["done"], ["b"], 3) == "\r\x1b[3A\x1b[2Kdone\n\x1b[2Kb\n\x1b[J"
    assert erase(2) == "\r\x1b[2A\x1b[J" and erase(0) == ""


def test_plain_lines_on_open_close_and_now_and_then() -> None:
    assert plain_line_due(ChangeKind.OPENED, None, 0.0, 10.0)
    assert plain_line_due(ChangeKind.CLOSED, 9.5, 10.0, 10.0)
    assert not plain_line_due(ChangeKind.UPDATED, 5.0, 10.0, 10.0)
    assert plain_line_due(ChangeKind.UPDATED, 0.0, 10.0, 10.0)


def test_terminal_bars_in_place_step_aside_for_other_output() -> None:
    out = io.StringIO()
    shown = BarDisplay(BarBoard(10, 10), TerminalBars(out, in_place=True))
    shown.report([(_state("a", n=1, desc="a"), TASK), (_state("b", n=2, desc="b"), TASK)])
    with shown.other_output():
        out.write("a printed line\n")
    shown.report([(_state("a", n=10, desc="a", closed=True), TASK)])
    frames = out.getvalue()
    # the two bars were erased before the line and drawn again below it
    assert "\r\x1b[2A\x1b[Ja printed line\n\r\x1b[2K" in frames
    # then "a" closed: its final line stays printed, "b" is the only bar left
    finished, live, tail = frames[frames.rindex("\r\x1b[2A"):].split("\n")
    assert "a: 100%" in finished and "10/10" in finished
    assert "b:  20%" in live and tail == "\x1b[J"


def test_terminal_bars_without_a_terminal_print_lines_now_and_then() -> None:
    out = io.StringIO()
    shown = BarDisplay(BarBoard(10, 10), TerminalBars(out, in_place=False, plain_interval_s=3600))
    for n in range(5):
        shown.report([(_state(n=n, desc="x"), TASK)])
    shown.report([(_state(n=10, desc="x", closed=True), TASK)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "x:   0%" in lines[0] and "10/10" in lines[1]
    assert "\x1b" not in out.getvalue()


# ---- the driver side: output batches and bars made on the driver -------------------------------------------


class Recorder:
    """A renderer that keeps what it was asked to draw."""

    def __init__(self) -> None:
        self.changes: list[BarChange] = []
        self.hidden = 0

    def draw(self, changes: Sequence[BarChange], board: BarBoard, now_s: float) -> None:
        self.changes += changes

    def hide(self) -> None:
        self.hidden += 1

    def unhide(self) -> None:
        pass

    def seen(self) -> list[tuple[str, float, str]]:
        return [(c.kind.value, c.bar.state.n, c.bar.state.desc) for c in self.changes]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    saved = bar_display._display[0]
    rec = Recorder()
    bar_display._display[0] = BarDisplay(BarBoard(10, 10), rec)
    try:
        yield rec
    finally:
        bar_display._display[0] = saved


def test_worker_output_hands_its_reports_to_the_bar_display(recorder: Recorder) -> None:
    batch = gcs_pb2.LogBatch()
    first = batch.entries.add(task_name="work", pid=42, context_tag="cell:x:1")
    first.text = "hello\n" + encode_report(_state("u1", n=2))
    batch.entries.add(text=encode_report(_state("u2", n=1)))
    batch.entries.add(text="untouched\n")
    rest = bar_display.take_bar_reports(batch)
    assert [(e.text, e.task_name) for e in rest.entries] == [("hello\n", "work"), ("untouched\n", "")]
    assert [(c.kind, c.bar.key, c.bar.source.context_tag, c.bar.source.pid) for c in recorder.changes] == [
        (ChangeKind.OPENED, "u1", "cell:x:1", 42), (ChangeKind.OPENED, "u2", "", 0)]
    plain = gcs_pb2.LogBatch()
    plain.entries.add(text="no bars\n")
    assert bar_display.take_bar_reports(plain) is plain


def test_a_driver_bar_shows_at_once_throttles_and_closes_after_the_loop(recorder: Recorder) -> None:
    for _ in tqdm(range(50), desc="loop", flush_interval_s=3600):
        pass
    assert recorder.seen() == [("opened", 0, "loop"), ("closed", 50, "loop")]
    assert recorder.changes[0].bar.source.on_driver and recorder.changes[0].bar.state.total == 50


def test_leaving_a_loop_early_closes_the_bar_where_it_stopped(recorder: Recorder) -> None:
    for i in tqdm(range(10), flush_interval_s=3600):
        if i == 3:
            break
    assert recorder.seen()[-1] == ("closed", 3, "")


def test_every_update_is_reported_without_throttling(recorder: Recorder) -> None:
    bar = tqdm(total=3, desc="d", unit="step", flush_interval_s=0)
    bar.update()
    bar.set_description("e")
    bar.update(2)
    bar.close()
    bar.close()
    bar.update()
    assert recorder.seen() == [("opened", 0, "d"), ("updated", 1, "d"), ("updated", 1, "e"),
                               ("updated", 3, "e"), ("closed", 3, "e")]
    assert recorder.changes[-1].bar.state.unit == "step"


def test_misuse_is_a_clear_error(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="no iterable"):
        list(tqdm(total=3, flush_interval_s=3600))
    with pytest.raises(ValueError, match="flush_interval_s must be >= 0"):
        tqdm(total=3, flush_interval_s=-1)


def test_safe_print_hides_the_bars_while_it_prints(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    bar_display.safe_print("between", "bars")
    assert recorder.hidden == 1 and capsys.readouterr().out == "between bars\n"


def test_a_bar_dropped_without_close_is_closed_where_it_stood(recorder: Recorder) -> None:
    bar = tqdm(total=5, desc="dropped", flush_interval_s=3600)
    bar.update(2)
    del bar
    assert recorder.seen() == [("opened", 0, "dropped"), ("closed", 2, "dropped")]
