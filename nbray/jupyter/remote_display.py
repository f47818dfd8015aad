"""``display()`` for code running on workers: rich output in the notebook.

Runs in worker processes (stdlib only; IPython and matplotlib are used when
the task itself imported them). Each call computes the object's MIME
bundle here, where the object lives, and writes it as marker lines
(``display_wire``) to the task's stdout; the notebook turns them into
``display_data`` in the cell that submitted the task. Works from any task
or actor, not only ``%%remote`` cells::

    from nbray.jupyter.remote_display import display

    @nbray.remote
    def report(df):
        display(df.describe())      # an HTML table under the submitting cell
"""

from __future__ import annotations

import base64
import io
import sys
import threading
import uuid
from typing import Any

from nbray.jupyter import display_wire

_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
    ("_repr_javascript_", "application/javascript"),
    ("_repr_pdf_", "application/pdf"),
)
_BINARY_MIMES = {"image/png", "image/jpeg", "application/pdf"}

_lock = threading.Lock()
_target: list[Any] = [None]  # the stream a running remote cell writes to (None: sys.stdout)


def set_target(stream: Any) -> Any:
    """Route marker lines to `stream` (a remote cell's stdout); returns the old one."""
    old = _target[0]
    _target[0] = stream
    return old


def _write(kind: str, payload: dict[str, Any]) -> None:
    stream = _target[0] or sys.stdout
    lines = display_wire.encode(kind, payload)
    with _lock:
        for line in lines:
            stream.write(line)
        stream.flush()


# ---- MIME bundles -------------------------------------------------------------------------------------


def _jsonable(mime: str, value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        if mime in _BINARY_MIMES:
            return base64.b64encode(bytes(value)).decode("ascii")
        return bytes(value).decode("utf-8", "replace")
    return value


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _is_figure(obj: Any) -> bool:
    mpl = sys.modules.get("matplotlib.figure")
    return mpl is not None and isinstance(obj, mpl.Figure)


def mime_bundle(obj: Any, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(data, metadata) for `obj`, as IPython's formatters would make them."""
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    method = getattr(obj, "_repr_mimebundle_", None)
    if callable(method) and not isinstance(obj, type):
        result = method(include=include, exclude=exclude)
        if isinstance(result, tuple):
            result, md = result
            metadata.update(md or {})
        for mime, value in (result or {}).items():
            data[mime] = _jsonable(mime, value)
    if _is_figure(obj) and "image/png" not in data:
        data["image/png"] = _jsonable("image/png", _figure_png(obj))
    for attr, mime in _REPR_METHODS:
        if mime in data:
            continue
        method = getattr(obj, attr, None)
        if not callable(method) or isinstance(obj, type):
            continue
        try:
            value = method()
        except NotImplementedError:
            continue
        if value is None:
            continue
        if isinstance(value, tuple):
            value, md = value
            if md:
                metadata[mime] = md
        data[mime] = _jsonable(mime, value)
    if "text/plain" not in data:
        data["text/plain"] = _plain_repr(obj)
    if include:
        data = {k: v for k, v in data.items() if k in include}
    if exclude:
        data = {k: v for k, v in data.items() if k not in exclude}
    return data, metadata


def _plain_repr(obj: Any) -> str:
    try:
        import pprint

        return pprint.pformat(obj) if isinstance(obj, (dict, list, tuple, set)) else repr(obj)
    except Exception as exc:  # a broken __repr__ must not kill the cell
        return f"<{type(obj).__name__} object (repr failed: {exc!r})>"


# ---- the IPython.display API, remotely ---------------------------------------------------------------------


class DisplayHandle:
    """Like IPython's: update a displayed output in place."""

    def __init__(self, display_id: str | None = None) -> None:
        self.display_id = display_id or uuid.uuid4().hex

    def display(self, obj: Any, **kwargs: Any) -> None:
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj: Any, **kwargs: Any) -> None:
        update_display(obj, display_id=self.display_id, **kwargs)

    def __repr__(self) -> str:
        return f"<DisplayHandle display_id={self.display_id}>"


def display(*objs: Any, include: Any = None, exclude: Any = None, metadata: dict[str, Any] | None = None,
            transient: dict[str, Any] | None = None, display_id: Any = None, raw: bool = False,
            clear: bool = False, update: bool = False, **kwargs: Any) -> DisplayHandle | None:
    """Show `objs` in the notebook cell that submitted this task."""
    if clear:
        clear_output(wait=True)
    handle = None
    if display_id is not None:
        handle = DisplayHandle(None if display_id is True else str(display_id))
        transient = dict(transient or {}, display_id=handle.display_id)
    for obj in objs:
        md: dict[str, Any]
        if raw:
            data, md = dict(obj), {}
        else:
            data, md = mime_bundle(obj, include, exclude)
        if metadata:
            md = dict(md, **metadata)
        _write("display", {"data": data, "metadata": md, "transient": transient or {}, "update": update})
    return handle


def update_display(obj: Any, *, display_id: str, **kwargs: Any) -> None:
    display(obj, display_id=display_id, update=True, **kwargs)


def clear_output(wait: bool = False) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    _write("clear", {"wait": bool(wait)})


def publish_display_data(data: dict[str, Any], metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
    display(data, raw=True, metadata=metadata, **kwargs)


def patch_ipython_display() -> None:
    """Make IPython's display functions (when imported on this worker) send
    their output to the notebook instead of printing reprs."""
    import importlib

    for module_name in ("IPython.display", "IPython.core.display_functions", "IPython.core.display"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, fn in (("display", display), ("update_display", update_display),
                         ("clear_output", clear_output), ("publish_display_data", publish_display_data)):
            if hasattr(module, name):
                setattr(module, name, fn)


# ---- matplotlib ------------------------------------------------------------------------------------------------


def flush_figures(close: bool = True) -> int:
    """Display every open pyplot figure (as ``%matplotlib inline`` does at
    the end of a cell); returns how many were shown."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return 0
    shown = 0
    for num in plt.get_fignums():
        fig = plt.figure(num)
        if fig.axes or fig.images or fig.patches or fig.texts or getattr(fig, "lines", None):
            display(fig)
            shown += 1
    if close:
        plt.close("all")
    return shown
