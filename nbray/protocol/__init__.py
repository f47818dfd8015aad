"""Messages and services exchanged between nbray processes.

The ``.proto`` files here are the single source of truth; the ``*_pb2``
modules are generated from them by ``scripts/gen_protos.py``. ``METHODS``
numbers every rpc of every service in declaration order, which is how a
frame names the method it calls (both ends run the same nbray version,
checked at the handshake).

The services' modules are loaded on first use, in wire order and only as
far as needed: ``method("GcsService.GetClusterStatus")`` loads the GCS's
messages alone (what ``nbray status`` needs), while ``METHODS`` (what a
connection's dispatcher needs) loads them all. The ids are the same either
way, since a service's ids follow those of every service before it.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from nbray.protocol import client_pb2, common_pb2, core_worker_pb2, gcs_pb2, raylet_pb2

# Services in wire order; appending a service or rpc keeps existing ids.
_SERVICES = [
    ("gcs_pb2", "GcsService"),
    ("gcs_pb2", "SubscriberService"),
    ("raylet_pb2", "RayletService"),
    ("raylet_pb2", "ZygoteEventsService"),
    ("raylet_pb2", "ZygoteService"),
    ("core_worker_pb2", "CoreWorkerService"),
    ("client_pb2", "ClientService"),
]
_SERVICE_INDEX = {service: i for i, (_, service) in enumerate(_SERVICES)}
_MODULES = frozenset({"client_pb2", "common_pb2", "core_worker_pb2", "gcs_pb2", "raylet_pb2"})


class Method:
    """One rpc: its wire id and its request and reply classes."""

    __slots__ = ("id", "service", "name", "full_name", "request_cls", "reply_cls")

    def __init__(self, method_id: int, service: str, name: str,
                 request_cls: type[Message], reply_cls: type[Message]) -> None:
        self.id = method_id
        self.service = service
        self.name = name
        self.full_name = f"{service}.{name}"
        self.request_cls = request_cls
        self.reply_cls = reply_cls

    def __repr__(self) -> str:
        return f"Method({self.full_name})"


_methods: list[Method] = []
_by_name: dict[str, Method] = {}
_by_service: dict[str, list[Method]] = {}
_lock = threading.Lock()


def _load_through(service_index: int) -> None:
    """Number the methods of every service up to `service_index` (inclusive) not numbered yet."""
    if len(_by_service) > service_index:
        return
    from google.protobuf.message_factory import GetMessageClass

    with _lock:
        while len(_by_service) <= service_index:
            module_name, service_name = _SERVICES[len(_by_service)]
            module = importlib.import_module(f"{__name__}.{module_name}")
            numbered = []
            for m in module.DESCRIPTOR.services_by_name[service_name].methods:
                numbered.append(Method(len(_methods), service_name, m.name,
                                       GetMessageClass(m.input_type), GetMessageClass(m.output_type)))
                _methods.append(numbered[-1])
                _by_name[numbered[-1].full_name] = numbered[-1]
            _by_service[service_name] = numbered


def _service_index(service: str) -> int:
    try:
        return _SERVICE_INDEX[service]
    except KeyError:
        raise KeyError(f"no nbray service named {service!r}") from None


def method(full_name: str) -> Method:
    """Look up ``"Service.Method"`` (KeyError for an unknown one)."""
    found = _by_name.get(full_name)
    if found is None:
        _load_through(_service_index(full_name.partition(".")[0]))
        found = _by_name[full_name]
    return found


def service_methods(service: str) -> list[Method]:
    _load_through(_service_index(service))
    return list(_by_service[service])


def all_methods() -> list[Method]:
    """Every method of every service, indexed by wire id."""
    _load_through(len(_SERVICES) - 1)
    return _methods


def __getattr__(name: str) -> Any:
    """``METHODS`` (every method, indexed by wire id) and the ``*_pb2`` modules, on first use."""
    value: list[Method] | ModuleType
    if name == "METHODS":
        value = all_methods()
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


METHODS: list[Method]  # bound by __getattr__ on first use

__all__ = [
    "METHODS",
    "Method",
    "all_methods",
    "client_pb2",
    "common_pb2",
    "core_worker_pb2",
    "gcs_pb2",
    "method",
    "raylet_pb2",
    "service_methods",
]
