"""The lean transport (porter/wire.py) keeps httpx's guarantees: fast tests, loopback only, no services."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from porter.wire import StdlibTransport


def whole(data: bytes) -> bool:
    """Has the whole request arrived (headers, then a chunked or Content-Length body)?"""
    if b"\r\n\r\n" not in data:
        return False
    head, body = data.split(b"\r\n\r\n", 1)
    if b"chunked" in head.lower():
        return body.endswith(b"0\r\n\r\n")
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def serve_once(answer: bytes, received: list[bytes]) -> tuple[str, threading.Thread]:
    """A one-connection server on 127.0.0.1: records what arrives (until the request is whole),
    sends ``answer`` and closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        data = b""
        conn.settimeout(5)
        while not whole(data):
            more = conn.recv(65536)
            if not more:
                break
            data += more
        received.append(data)
        conn.sendall(answer)
        conn.close()
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}/", t


def client(timeout: float = 5, connect: float | None = None) -> httpx.Client:
    return httpx.Client(transport=StdlibTransport(False, timeout, connect_timeout=connect))


def test_request_body_of_unknown_length_is_sent_chunked():
    received: list[bytes] = []
    url, t = serve_once(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", received)
    with client() as c:
        r = c.post(url, content=iter([b"abc", b"", b"defg"]))
    t.join(5)
    assert r.status_code == 201
    head, body = received[0].split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"  # empty chunks are not sent: they would end the body


def test_request_body_of_known_length_is_sent_as_is():
    received: list[bytes] = []
    url, t = serve_once(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", received)
    with client() as c:
        r = c.put(url, content=iter([b"abc", b"defg"]), headers={"Content-Length": "7"})
    t.join(5)
    assert r.status_code == 201 and received[0].endswith(b"\r\n\r\nabcdefg")


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end"),  # close-delimited
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
])
def test_answers_framed_every_way_are_read_whole(answer, body):
    url, t = serve_once(answer, [])
    with client() as c:
        assert c.get(url).content == body
    t.join(5)


def test_an_answer_cut_short_is_an_error_not_a_short_body():
    url, t = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", [])
    with client() as c, pytest.raises(httpx.RemoteProtocolError):
        c.get(url).read()
    t.join(5)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1/x", "ftp://127.0.0.1/"])
def test_only_http_and_https(url):
    with pytest.raises(httpx.UnsupportedProtocol):
        StdlibTransport(False, 5).handle_request(httpx.Request("GET", url))


def test_connect_timeout_is_its_own():
    """A listener whose accept queue is full drops new SYNs: connecting must give up after the
    connect timeout (1 s), not the read timeout (60 s)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue; later SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    started = time.monotonic()
    try:
        with client(timeout=60, connect=1) as c, pytest.raises(httpx.ConnectTimeout):
            c.get(f"http://127.0.0.1:{port}/")
        assert time.monotonic() - started < 10
    finally:
        for s in fillers:
            s.close()
        srv.close()


def test_reads_wait_for_the_read_timeout_after_connecting():
    """Connected, a slow answer gets the read timeout, not the (shorter) connect timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def slow() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        time.sleep(1.5)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()

    threading.Thread(target=slow, daemon=True).start()
    with client(timeout=5, connect=0.5) as c:
        assert c.get(f"http://127.0.0.1:{srv.getsockname()[1]}/").content == b"ok"
    srv.close()


def keep_alive_server(answers: list[bytes]) -> tuple[str, list[int], threading.Thread]:
    """A server that answers each request in turn on whatever connection it arrives; counts
    the connections it accepted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted: list[int] = []
    left = list(answers)

    def run() -> None:
        srv.settimeout(5)
        while left:
            conn, _ = srv.accept()
            accepted.append(1)
            conn.settimeout(5)
            data = b""
            while left:
                more = conn.recv(65536)
                if not more:
                    break
                data += more
                while b"\r\n\r\n" in data and left:
                    data = data.split(b"\r\n\r\n", 1)[1]
                    conn.sendall(left.pop(0))
            conn.close()
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}/", accepted, t


def test_answers_without_a_body_keep_their_connection():
    """HEAD, 202 with Content-Length: 0, 204: closed unread, the connection is still reused
    (each one opening a new connection cost the registry and porter a connection per request)."""
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",  # HEAD: the length of what GET would send
               b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nLocation: /u\r\n\r\n",
               b"HTTP/1.1 204 No Content\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    url, accepted, t = keep_alive_server(answers)
    with client() as c:
        for method, status in (("HEAD", 200), ("POST", 202), ("DELETE", 204)):
            r = c.send(c.build_request(method, url), stream=True)  # as porter sends: closed unread
            r.close()
            assert r.status_code == status
        assert c.get(url).content == b"ok"
    t.join(5)
    assert len(accepted) == 1


def test_a_deadline_shuts_a_trickling_answer():
    """The deadline thread fires for the request that overran, after many others cancelled theirs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def trickle() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        try:
            for _ in range(50):
                conn.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    from porter import wire

    for _ in range(2000):  # cancelled watchdogs: their entries are dropped, memory stays bounded
        wire._Watchdog(type("C", (), {"sock": None})(), time.monotonic() + 60).cancel()
    assert len(wire._DEADLINES._heap) < 1100
    started = time.monotonic()
    with client(timeout=5) as c, pytest.raises(wire.DeadlineExceeded):
        c.send(c.build_request("GET", f"http://127.0.0.1:{srv.getsockname()[1]}/",
                               extensions={"porter.deadline": time.monotonic() + 0.5})).read()
    assert time.monotonic() - started < 3
    srv.close()
