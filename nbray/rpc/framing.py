"""The frame header every nbray connection uses (see ``connection.py`` for the layout).

Its own module so that a one-off client (``BlockingClient``, ``nbray
status``) and the handshake can build and read frames without importing
the connection machinery.
"""

from __future__ import annotations

import struct

# u32 body_len | u32 trailer_len | u16 method_id | u16 kind | u32 request_id, little endian
HEADER = struct.Struct("<IIHHI")
HEADER_SIZE = HEADER.size
KIND_REQUEST = 0
KIND_REPLY = 1
KIND_ONEWAY = 2
KIND_ERROR = 3
