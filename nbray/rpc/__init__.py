"""Length-prefixed protobuf messages over plain sockets, authenticated.

Every connection starts with a 40-byte preface (magic, protocol version,
256-bit cluster token) that the server checks in constant time before it
parses a single byte more; then a Hello exchange compares nbray and Python
versions. After that both ends may send requests, replies and one-way
messages, each a 16-byte header, a protobuf body and an optional raw
trailer (object chunks travel there without being copied into protobuf).
"""
