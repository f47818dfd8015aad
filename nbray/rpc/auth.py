"""The cluster token: generation, storage and lookup.

A 256-bit token is generated when a head node starts and stored with mode
0600 in the session directory. Every connection presents it first; the
server compares it in constant time before reading anything else.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat

from nbray.exceptions import AuthenticationError

TOKEN_BYTES = 32
TOKEN_ENV = "NBRAY_AUTH_TOKEN"
TOKEN_FILE_ENV = "NBRAY_AUTH_TOKEN_PATH"
TOKEN_FILE_NAME = "auth_token"


def generate_token() -> bytes:
    return secrets.token_bytes(TOKEN_BYTES)


def encode_token(token: bytes) -> str:
    return token.hex()


def decode_token(text: str, source: str) -> bytes:
    text = text.strip()
    try:
        token = bytes.fromhex(text)
    except ValueError:
        token = b""
    if len(token) != TOKEN_BYTES:
        raise AuthenticationError(
            f"the cluster token from {source} is malformed: expected {TOKEN_BYTES * 2} hex "
            "characters (run 'nbray get-auth-token' on the head node to print it)"
        )
    return token


def write_token_file(path: str, token: bytes) -> None:
    """Write the token readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        f.write(encode_token(token) + "\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def read_token_file(path: str) -> bytes:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise AuthenticationError(f"cannot read the cluster token file {path}: {exc}") from exc
    return decode_token(text, path)


def token_from_environment() -> bytes | None:
    """The token from NBRAY_AUTH_TOKEN or NBRAY_AUTH_TOKEN_PATH, if set."""
    text = os.environ.get(TOKEN_ENV)
    if text:
        return decode_token(text, TOKEN_ENV)
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return read_token_file(path)
    return None


def tokens_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
