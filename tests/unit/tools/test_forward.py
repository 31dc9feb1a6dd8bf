"""tools/forward.py: bytes both ways between a listening address and one target, on loopback."""

from __future__ import annotations

import socket
import threading

from tools.forward import Forward


def echo_server() -> tuple[socket.socket, tuple[str, int]]:
    """A loopback server that answers each connection's first bytes upper-cased, then closes it."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(1024).upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()


def test_bytes_go_through_both_ways_on_each_connection():
    server, target = echo_server()
    with server, Forward("127.0.0.1", 0, target) as forward:
        assert forward.port and forward.url == f"http://127.0.0.1:{forward.port}/"
        for word in (b"first", b"second"):
            with socket.create_connection(("127.0.0.1", forward.port), timeout=5) as client:
                client.sendall(word)
                assert client.recv(1024) == word.upper()


def test_a_taken_port_leaves_port_zero_and_says_why():
    server, target = echo_server()
    with server, Forward("127.0.0.1", 0, target) as first:
        second = Forward("127.0.0.1", first.port, target)
        try:
            assert second.port == 0 and second.error is not None
        finally:
            second.close()


def test_close_drops_open_connections_and_frees_the_port():
    held = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    through = threading.Event()

    def hold() -> None:  # accepts one connection and keeps it open, saying nothing
        accepted.append(held.accept()[0])
        through.set()

    threading.Thread(target=hold, daemon=True).start()
    with held:
        forward = Forward("127.0.0.1", 0, held.getsockname())
        client = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
        assert through.wait(5), "the forward connected to the target"
        forward.close()
        assert client.recv(16) == b""
        client.close()
        accepted[0].close()
        again = Forward("127.0.0.1", forward.port, held.getsockname())
        assert again.port == forward.port
        again.close()


def test_a_connection_from_outside_the_allowed_networks_is_closed_unread():
    """With `allow`, a peer outside those networks gets its connection closed, and the target never
    sees it; one inside gets through."""
    server, target = echo_server()
    with server, Forward("127.0.0.1", 0, target, allow=["10.0.0.0/8"]) as closed:
        with socket.create_connection(("127.0.0.1", closed.port), timeout=5) as client:
            try:
                client.sendall(b"hello")
                assert client.recv(1024) == b""
            except ConnectionResetError:
                pass
        assert closed.refused == 1
    with server, Forward("127.0.0.1", 0, target, allow=["127.0.0.0/8"]) as open_:
        with socket.create_connection(("127.0.0.1", open_.port), timeout=5) as client:
            client.sendall(b"hello")
            assert client.recv(1024) == b"HELLO"


def test_run_as_a_program_it_forwards_until_stopped():
    """`python3 tools/forward.py` says where it listens once it does, forwards, and ends on SIGTERM."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    server, target = echo_server()
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    script = Path(__file__).resolve().parents[3] / "tools" / "forward.py"
    with server, subprocess.Popen([sys.executable, str(script), "--listen", "127.0.0.1", "--port", str(port),
                                   "--target", f"{target[0]}:{target[1]}", "--allow", "127.0.0.0/8"],
                                  stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr.readline() == f"forward: 127.0.0.1:{port} -> {target[0]}:{target[1]}, from 127.0.0.0/8\n"
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"word")
                assert client.recv(1024) == b"WORD"
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
