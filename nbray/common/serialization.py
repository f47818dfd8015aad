"""How values become bytes and back, in every process.

One layout serves inline objects (carried in messages) and objects in the
shared-memory store, so a reader treats both the same::

    byte 0      flags: 1 = has out-of-band buffers, 2 = the value is an error
    no buffers: bytes 1.. are a pickle
    buffers:    u8 flags | 3 pad | u32 n | u64 meta_len | n x (u64 offset, u64 length)
                | meta (pickle) | buffers, each at a 64-byte aligned offset

Large buffers (numpy arrays, Arrow buffers, bytes-like objects) go out of
band with pickle protocol 5 and are read back as read-only views of the
message or of shared memory: no copy on the read side.

Plain data (numbers, strings, small containers of them) is pickled by the C
pickler; anything else by cloudpickle, so functions and classes defined in
``__main__`` (notebooks) travel by value. ObjectRefs and actor handles met
while pickling are recorded in the thread's serialization context so the
caller can track them as nested references.

``Pickler`` is cloudpickle's pickler with one change: code objects keep
their real file name (cloudpickle 3.1 writes ``<dynamic-code>``), so
remote tracebacks name the user's file and line. Exceptions (task errors)
are pickled by ``dumps_exception``, which rebuilds them without calling
their ``__init__``: an exception whose constructor takes other arguments
than it passes to ``Exception.__init__`` still comes back. Modules of the
process's own that a cluster cannot import are pickled by value while
``nbray.common.module_shipping`` says so (notebook clients, drivers of
remote clusters).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
import types
from collections import ChainMap
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, cast

import cloudpickle

from nbray.common import module_shipping
from nbray.common.pickle_context import context as context  # re-exported
from nbray.common.pickle_context import record_nested_ref as record_nested_ref  # re-exported

FLAG_BUFFERS = 1
FLAG_ERROR = 2
ALIGNMENT = 64
# Buffers smaller than this stay inside the pickle stream.
MIN_OUT_OF_BAND_BYTES = 2048
_BUF_HEADER = struct.Struct("<B3xIQ")
_BUF_ENTRY = struct.Struct("<QQ")

_PLAIN_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})


def _is_plain(value: Any, budget: list[int]) -> bool:
    """True if `value` contains only atoms (checked up to a small budget)."""
    t = type(value)
    if t in _PLAIN_ATOMS:
        return True
    atoms = _PLAIN_ATOMS
    if t is tuple or t is list:
        budget[0] -= len(value)
        if budget[0] < 0:
            return False
        for v in value:
            if type(v) not in atoms and not _is_plain(v, budget):
                return False
        return True
    if t is dict:
        budget[0] -= len(value)
        if budget[0] < 0:
            return False
        for k, v in value.items():
            if type(k) not in atoms or (type(v) not in atoms and not _is_plain(v, budget)):
                return False
        return True
    return False


CodeReducer = Callable[[types.CodeType], tuple[Callable[..., types.CodeType], tuple[Any, ...]]]
_KEEPS_FILENAME = -1


def _filename_slot(reduce: CodeReducer) -> int | None:
    """Where `reduce` (cloudpickle's reduction of a code object) holds the
    file name it writes: an index into its constructor arguments,
    ``_KEEPS_FILENAME`` when it keeps the real name, None when it cannot be
    told apart."""
    probe = compile("pass", "<nbray-filename-probe>", "exec")
    rebuild, args = reduce(probe)
    if probe.co_filename in args:
        return _KEEPS_FILENAME
    written = rebuild(*args).co_filename
    slots = [i for i, arg in enumerate(args) if type(arg) is str and arg == written]
    return slots[0] if len(slots) == 1 else None


def filename_keeping_reducer(reduce: CodeReducer) -> CodeReducer:
    """`reduce` changed so that the code objects it rebuilds keep their
    ``co_filename``, whichever cloudpickle version `reduce` comes from."""
    slot = _filename_slot(reduce)
    if slot == _KEEPS_FILENAME:
        return reduce

    def reduce_code(code: types.CodeType) -> tuple[Callable[..., types.CodeType], tuple[Any, ...]]:
        rebuild, args = reduce(code)
        if slot is not None:  # put the name back in place: nothing extra to pickle or run on load
            return rebuild, args[:slot] + (code.co_filename,) + args[slot + 1:]
        return _code_with_filename, (rebuild, args, code.co_filename)

    return reduce_code


def _code_with_filename(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...],
                        filename: str) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def _flat_maps(table: Mapping[Any, Any]) -> list[MutableMapping[Any, Any]]:
    # One flat ChainMap: each level of nesting costs a Python-level lookup
    # for every object the C pickler meets. The tables are only read.
    maps = table.maps if isinstance(table, ChainMap) else [table]
    return [cast(MutableMapping[Any, Any], m) for m in maps]


class Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler, except that code objects keep their file name.

    cloudpickle 3.1 replaces every pickled function's ``co_filename`` with
    ``"<dynamic-code>"`` (for byte-stable pickles); tracebacks raised in
    workers would then lose the user's file, line and source. A function
    defined twice in different files is two different functions to nbray
    anyway, so nothing relies on the stable bytes.
    """

    dispatch_table: ChainMap[Any, Any] = ChainMap(
        {types.CodeType: filename_keeping_reducer(cloudpickle.Pickler.dispatch_table[types.CodeType])},
        *_flat_maps(cloudpickle.Pickler.dispatch_table))


class _ShippingPickler(Pickler):
    """``Pickler`` that first lets ``module_shipping`` decide whether the
    module of each function, class or module met must travel by value.
    Used only while shipping is active, so that ordinary pickling pays
    nothing for it."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, type, types.ModuleType)):
            module_shipping.note(obj)
        return super().reducer_override(obj)


def dumps(value: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """Pickle `value` with ``Pickler`` (protocol 5); the process's own
    modules travel by value while ``module_shipping`` is active."""
    pickler = _ShippingPickler if module_shipping.is_active() else Pickler
    with io.BytesIO() as file:
        pickler(file, protocol=5, buffer_callback=buffer_callback).dump(value)
        return file.getvalue()


# ---- exceptions ---------------------------------------------------------------------------------------


def _builtin_base(cls: type) -> type[BaseException]:
    """The nearest built-in exception class `cls` (an exception class) derives from."""
    base = next(base for base in cls.__mro__ if base.__module__ == "builtins")
    return cast(type[BaseException], base)


def _rebuilt_without_init(cls: type) -> type | None:
    """The built-in base to rebuild instances of `cls` with, or None when
    pickle's own way (``cls(*args)``) must be kept: the class defines how it
    pickles, or its construction is not plain Python ``__init__`` code."""
    base = _builtin_base(cls)
    if cls is base or cls in copyreg.dispatch_table:
        return None
    if cls.__reduce__ is not base.__reduce__ or cls.__reduce_ex__ is not base.__reduce_ex__:
        return None
    for klass in cls.__mro__[:cls.__mro__.index(base)]:
        own = vars(klass)
        if "__new__" in own or not isinstance(own.get("__init__", _no_init), types.FunctionType):
            return None
    return base


def _no_init() -> None:
    """Stands for a class that does not define ``__init__``."""


def _reduce_exception(exc: BaseException) -> Any:
    base = _rebuilt_without_init(type(exc))
    if base is None:
        return NotImplemented
    reduced = cast(Any, base).__reduce__(exc)  # (class, args[, state]) as pickle would save it
    state = reduced[2] if len(reduced) > 2 else None
    return _rebuild_exception, (type(exc), reduced[1], state)


def _rebuild_exception(cls: type, args: tuple[Any, ...], state: Any) -> BaseException:
    """An instance of `cls` with `args` and `state`, built without the
    user's ``__init__`` (which may take other arguments than `args`)."""
    base = _builtin_base(cls)
    exc: BaseException = base.__new__(cls, *args)
    try:
        # The built-in __init__ sets its C-level fields (OSError.errno,
        # StopIteration.value, ...) from args. A subclass that handed its
        # base other arguments than these keeps just args and attributes.
        cast(Any, base).__init__(exc, *args)  # the built-in's own __init__, not the subclass's
    except TypeError:
        pass
    if state:
        exc.__setstate__(state)
    return exc


class _ExceptionPickler(Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            reduced = _reduce_exception(obj)
            if reduced is not NotImplemented:
                return reduced
        return super().reducer_override(obj)


def dumps_exception(exc: BaseException) -> bytes:
    """Pickle an exception (and the exceptions inside it) so that it loads
    whatever its ``__init__`` takes: it is rebuilt from its args and
    attributes. Raises what pickling raises (e.g. TypeError for a lock)."""
    with io.BytesIO() as file:
        _ExceptionPickler(file, protocol=5).dump(exc)
        return file.getvalue()


class Serialized:
    """A value pickled with its out-of-band buffers, ready to be written."""

    __slots__ = ("meta", "buffers", "nested_refs", "is_error", "total_bytes", "_plain")

    def __init__(self, meta: bytes, buffers: list[pickle.PickleBuffer],
                 nested_refs: list[tuple[bytes, bytes]], is_error: bool) -> None:
        self.meta = meta
        self.buffers = [b.raw() for b in buffers]
        self.nested_refs = nested_refs
        self.is_error = is_error
        self._plain = not self.buffers
        if self._plain:
            self.total_bytes = 1 + len(meta)
        else:
            offset = _align(_BUF_HEADER.size + _BUF_ENTRY.size * len(self.buffers) + len(meta))
            for buf in self.buffers:
                offset = _align(offset + buf.nbytes)
            self.total_bytes = offset

    def to_bytes(self) -> bytes:
        """The whole layout as one bytes object (for inline transport)."""
        flags = FLAG_ERROR if self.is_error else 0
        if self._plain:
            return bytes((flags,)) + self.meta
        out = bytearray(self.total_bytes)
        self.write_into(memoryview(out))
        return bytes(out)

    def write_into(self, dest: memoryview) -> None:
        """Write the layout into `dest` (at least total_bytes long)."""
        flags = FLAG_ERROR if self.is_error else 0
        if self._plain:
            dest[0] = flags
            dest[1 : 1 + len(self.meta)] = self.meta
            return
        n = len(self.buffers)
        meta_at = _BUF_HEADER.size + _BUF_ENTRY.size * n
        _BUF_HEADER.pack_into(dest, 0, flags | FLAG_BUFFERS, n, len(self.meta))
        offset = _align(meta_at + len(self.meta))
        for i, buf in enumerate(self.buffers):
            size = buf.nbytes
            _BUF_ENTRY.pack_into(dest, _BUF_HEADER.size + _BUF_ENTRY.size * i, offset, size)
            dest[offset : offset + size] = buf.cast("B") if buf.format != "B" else buf
            offset = _align(offset + size)
        dest[meta_at : meta_at + len(self.meta)] = self.meta


    def segments(self) -> list[tuple[int, Any]]:
        """The layout as (offset, bytes-like) pieces without copying the
        buffers: the head (flags, buffer table, pickle), then each buffer.
        Gaps between pieces are alignment padding, never read."""
        flags = FLAG_ERROR if self.is_error else 0
        if self._plain:
            return [(0, bytes((flags,)) + self.meta)]
        n = len(self.buffers)
        meta_at = _BUF_HEADER.size + _BUF_ENTRY.size * n
        head = bytearray(meta_at + len(self.meta))
        _BUF_HEADER.pack_into(head, 0, flags | FLAG_BUFFERS, n, len(self.meta))
        head[meta_at:] = self.meta
        pieces: list[tuple[int, Any]] = [(0, head)]
        offset = _align(meta_at + len(self.meta))
        for i, buf in enumerate(self.buffers):
            _BUF_ENTRY.pack_into(head, _BUF_HEADER.size + _BUF_ENTRY.size * i, offset, buf.nbytes)
            pieces.append((offset, buf.cast("B") if buf.format != "B" else buf))
            offset = _align(offset + buf.nbytes)
        return pieces


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) & ~(ALIGNMENT - 1)


def serialize(value: Any, is_error: bool = False) -> Serialized:
    """Pickle `value`; raises TypeError naming the value if it cannot be."""
    buffers: list[pickle.PickleBuffer] = []

    def keep_large(buf: pickle.PickleBuffer) -> bool:
        with buf.raw() as view:
            if view.nbytes < MIN_OUT_OF_BAND_BYTES:
                return True  # in band
        buffers.append(buf)
        return False

    if _is_plain(value, [64]):
        return Serialized(pickle.dumps(value, protocol=5), [], [], is_error)
    saved = context.nested_refs
    refs: list[tuple[bytes, bytes]] = []
    context.nested_refs = refs
    try:
        meta = dumps(value, buffer_callback=keep_large)
    except Exception as exc:
        raise TypeError(f"Could not serialize {_describe(value)}: {type(exc).__name__}: {exc}") from exc
    finally:
        context.nested_refs = saved
    return Serialized(meta, buffers, refs, is_error)


def dumps_function(fn: Any) -> bytes:
    """Pickle a function or class by value where needed (cloudpickle)."""
    return dumps_function_with_modules(fn)[0]


def dumps_function_with_modules(fn: Any) -> tuple[bytes, module_shipping.LocalModules]:
    """Pickle a function or class, and say which of this process's own
    modules went into the pickle by value (to notice their reload)."""
    try:
        with module_shipping.collect() as modules:
            data = dumps(fn)
    except Exception as exc:
        raise TypeError(f"Could not serialize the function {_describe(fn)}: {exc}") from exc
    return data, module_shipping.LocalModules(modules.values())


def loads_function(data: bytes) -> Any:
    return pickle.loads(data)


def is_error_layout(data: Any) -> bool:
    return bool(data[0] & FLAG_ERROR)


def deserialize(data: Any, on_ref: Callable[[Any], None] | None = None) -> Any:
    """Rebuild a value from its layout (bytes or a read-only memoryview).

    Out-of-band buffers become read-only views into `data`, which therefore
    must stay valid as long as the value lives (the caller ties shared
    memory to the views' lifetime).
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    flags = view[0]
    saved = context.on_ref_deserialized
    context.on_ref_deserialized = on_ref
    try:
        if not flags & FLAG_BUFFERS:
            return pickle.loads(view[1:])
        _, n, meta_len = _BUF_HEADER.unpack_from(view, 0)
        meta_at = _BUF_HEADER.size + _BUF_ENTRY.size * n
        bufs = []
        for i in range(n):
            offset, size = _BUF_ENTRY.unpack_from(view, _BUF_HEADER.size + _BUF_ENTRY.size * i)
            bufs.append(view[offset : offset + size])
        return pickle.loads(view[meta_at : meta_at + meta_len], buffers=bufs)
    finally:
        context.on_ref_deserialized = saved


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


def find_unserializable(value: Any, max_depth: int = 3) -> str:
    """Best-effort path to the part of `value` that fails to pickle."""
    def fails(v: Any) -> bool:
        try:
            dumps(v)
            return False
        except Exception:
            return True

    path = "value"
    current = value
    for _ in range(max_depth):
        children: list[tuple[str, Any]] = []
        if isinstance(current, dict):
            children = [(f"[{k!r}]", v) for k, v in current.items()]
        elif isinstance(current, (list, tuple, set)):
            children = [(f"[{i}]", v) for i, v in enumerate(current)]
        elif hasattr(current, "__dict__"):
            children = [(f".{k}", v) for k, v in vars(current).items()]
        bad = next(((name, v) for name, v in children if fails(v)), None)
        if bad is None:
            break
        path += bad[0]
        current = bad[1]
    return f"{path} = {_describe(current)}"
