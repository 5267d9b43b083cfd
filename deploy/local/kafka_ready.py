#!/usr/bin/env python3
"""Is a Kafka broker ready? Exit 0 if it answers a Metadata request listing
at least one (unfenced) broker, 1 otherwise.

Used by deploy/local/stack. Standard library only (it runs before any virtualenv
exists) and one short TCP exchange, so polling it is cheap, unlike starting a
JVM for kafka-topics. Speaks the wire protocol directly:

1. ApiVersions v0 (every broker answers it), to learn which Metadata versions
   the broker accepts -- Kafka 4 removed Metadata v0-v3 (KIP-896);
2. Metadata v4 (the newest non-"flexible" version, so no compact encoding)
   with an empty topic list: the broker list tells whether this broker has
   registered with the controller and been unfenced. A KRaft broker leaves
   itself out of Metadata until then, so producing works once this passes.

usage: kafka_ready.py HOST PORT [--verbose]
"""

from __future__ import annotations

import socket
import struct
import sys

API_METADATA = 3
API_VERSIONS = 18
METADATA_VERSION = 4


def request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"kubepulse-stack"
    # request header v1: api_key, api_version, correlation_id, client_id (nullable string)
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", recv_exactly(sock, 4))[0]
    response = recv_exactly(sock, size)
    (got_id,) = struct.unpack_from(">i", response, 0)  # response header v0
    if got_id != correlation_id:
        raise ValueError(f"correlation id {got_id} != {correlation_id}")
    return response[4:]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def metadata_versions(sock: socket.socket) -> tuple[int, int] | None:
    body = request(sock, API_VERSIONS, 0, 1, b"")
    error_code, count = struct.unpack_from(">hi", body, 0)
    if error_code != 0:
        raise ValueError(f"ApiVersions error {error_code}")
    offset = 6
    for _ in range(count):
        key, lo, hi = struct.unpack_from(">hhh", body, offset)
        offset += 6
        if key == API_METADATA:
            return lo, hi
    return None


def read_string(body: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", body, offset)
    offset += 2
    if length < 0:
        return None, offset
    return body[offset : offset + length].decode(), offset + length


def brokers(sock: socket.socket) -> tuple[list[str], str | None]:
    # Metadata v4 body: topics (array, 0 = none), allow_auto_topic_creation
    body = request(sock, API_METADATA, METADATA_VERSION, 2, struct.pack(">ib", 0, 0))
    offset = 4  # throttle_time_ms
    (count,) = struct.unpack_from(">i", body, offset)
    offset += 4
    found = []
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", body, offset)
        host, offset = read_string(body, offset + 4)
        (port,) = struct.unpack_from(">i", body, offset)
        _rack, offset = read_string(body, offset + 4)
        found.append(f"{node_id}@{host}:{port}")
    cluster_id, offset = read_string(body, offset)
    return found, cluster_id


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    verbose = "--verbose" in sys.argv[3:]
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            sock.settimeout(3.0)
            versions = metadata_versions(sock)
            if versions is None or not versions[0] <= METADATA_VERSION <= versions[1]:
                # A future broker without Metadata v4: answering ApiVersions
                # is the best this small probe can tell.
                if verbose:
                    print(f"broker answers ApiVersions; Metadata versions {versions}")
                return 0
            found, cluster_id = brokers(sock)
    except (OSError, ValueError, struct.error) as exc:
        if verbose:
            print(f"not ready: {exc}", file=sys.stderr)
        return 1
    if verbose:
        print(f"cluster {cluster_id}, brokers {', '.join(found) or 'none (not registered yet)'}")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
