"""Connections at the socket (`app.api.connections`), against a real `python -m uvicorn
app.main:app` with each of uvicorn's HTTP/1.1 parsers: request heads that never complete
are closed, connections from one address are capped, and other clients are served meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.processes import Server

pytestmark = pytest.mark.slow

HEAD_TIMEOUT = 1.0
CAP = 3
# The whole 127/8 is loopback on Linux: other client addresses (one per test: the server may
# not yet have seen the closes of an earlier test's connections).
ATTACKER, HOARDER = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp(f"connections-{request.param}")
    env = {
        "ANALYZERS": "skin",
        "HEADER_READ_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "MAX_CONNECTIONS_PER_ADDRESS": str(CAP),
    }
    # A long keep-alive: idle connections stay open for as long as a test needs them.
    process = Server(
        work / "data", work / "server.log", env, ("--http", request.param, "--timeout-keep-alive", "60")
    )
    try:
        process.wait_ready(timeout=60)
        yield process
    finally:
        process.stop()


def connect(server: Server, address: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.settimeout(15)  # a bound on a test that fails, not a measurement
    s.bind((address, 0))
    s.connect(("127.0.0.1", server.port))
    return s


def until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while data := s.recv(65536):
        received += data
    return received


def response(s: socket.socket) -> tuple[int, bytes]:
    """One response with a Content-Length (the connection stays open)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += s.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I)[1])
    while len(body) < length:
        body += s.recv(65536)
    return int(head.split()[1]), body


def problem(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower() and b"connection: close" in head.lower()
    return int(head.split()[1]), json.loads(body)["code"]


def health(server: Server) -> int:
    return httpx.get(server.base_url + "/health", timeout=15).status_code


def test_a_partial_request_head_is_answered_408_and_closed(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # ... and nothing more
        assert problem(until_closed(s)) == (408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with connect(server) as s:
        assert until_closed(s) == b""


def test_a_partial_head_after_a_keep_alive_request_is_closed(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response(s)[0] == 200
        time.sleep(HEAD_TIMEOUT * 1.5)  # idle between requests: not a head, still open
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response(s)[0] == 200
        s.sendall(b"GET /heal")
        assert problem(until_closed(s)) == (408, "request_timeout")


def test_a_body_is_not_held_to_the_head_timeout(server: Server) -> None:
    body = json.dumps({"image_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}).encode()
    with connect(server) as s:
        s.sendall(
            b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(HEAD_TIMEOUT * 1.5)
        s.sendall(body[10:])
        status, answer = response(s)
    assert (status, json.loads(answer)["code"]) == (404, "image_not_found")


def test_connections_over_the_per_address_cap_are_refused_while_others_are_served(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(CAP):  # idle keep-alive connections, each after one request
            s = stack.enter_context(connect(server, ATTACKER))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response(s)[0] == 200
            held.append(s)
        with connect(server, ATTACKER) as extra:
            refusal = until_closed(extra)
            assert problem(refusal) == (503, "overloaded")
            assert b"\r\nretry-after: 1\r\n" in refusal.partition(b"\r\n\r\n")[0] + b"\r\n"
        assert health(server) == 200  # another address
        held.pop().close()
        for _ in range(100):  # once the server has seen the close, the address has room again
            with connect(server, ATTACKER) as again:
                again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                with contextlib.suppress(ConnectionError):
                    if response(again)[0] == 200:
                        break
            time.sleep(0.1)
        else:
            pytest.fail("the address never got its connection back")
        metrics = httpx.get(server.base_url + "/metrics", timeout=15).text
    assert re.search(r'http_connections_closed_total\{reason="max_per_address"\} [1-9]', metrics)
    assert re.search(r'http_connections\{state="idle"\} \d', metrics)


def test_idle_heads_from_one_address_do_not_starve_health_probes(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(connect(server, HOARDER)) for _ in range(CAP * 4)]
        for s in opened:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused already
                s.sendall(b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\n")
        assert health(server) == 200
        answers = []
        for s in opened:  # every one is closed by the server, refused or timed out (a hang: TimeoutError)
            try:
                answers.append(problem(until_closed(s))[0])
            except ConnectionResetError:
                answers.append(0)
    assert answers.count(408) == CAP and set(answers) <= {408, 503, 0}
    metrics = httpx.get(server.base_url + "/metrics", timeout=15).text
    assert re.search(r'http_connections_closed_total\{reason="head_timeout"\} [1-9]', metrics)
