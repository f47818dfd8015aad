"""Messages and services exchanged between nbray processes.

The ``.proto`` files here are the single source of truth; the ``*_pb2``
modules are generated from them by ``scripts/gen_protos.py``. ``METHODS``
numbers every rpc of every service in declaration order, which is how a
frame names the method it calls (both ends run the same nbray version,
checked at the handshake).
"""

from __future__ import annotations

from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from nbray.protocol import client_pb2, common_pb2, core_worker_pb2, gcs_pb2, raylet_pb2

# Services in wire order; appending a service or rpc keeps existing ids.
_SERVICES = [
    (gcs_pb2, "GcsService"),
    (gcs_pb2, "SubscriberService"),
    (raylet_pb2, "RayletService"),
    (raylet_pb2, "ZygoteEventsService"),
    (raylet_pb2, "ZygoteService"),
    (core_worker_pb2, "CoreWorkerService"),
    (client_pb2, "ClientService"),
]


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


METHODS: list[Method] = []
_BY_NAME: dict[str, Method] = {}

for _module, _service_name in _SERVICES:
    _service = _module.DESCRIPTOR.services_by_name[_service_name]
    for _m in _service.methods:
        _method = Method(
            len(METHODS),
            _service_name,
            _m.name,
            GetMessageClass(_m.input_type),
            GetMessageClass(_m.output_type),
        )
        METHODS.append(_method)
        _BY_NAME[_method.full_name] = _method


def method(full_name: str) -> Method:
    """Look up ``"Service.Method"``."""
    return _BY_NAME[full_name]


def service_methods(service: str) -> list[Method]:
    return [m for m in METHODS if m.service == service]


__all__ = [
    "METHODS",
    "Method",
    "client_pb2",
    "common_pb2",
    "core_worker_pb2",
    "gcs_pb2",
    "method",
    "raylet_pb2",
    "service_methods",
]
