"""A fault-injecting HTTP proxy on 127.0.0.1 for the S3 fault tests (tests/it/s3_faults.rs).

It forwards each HTTP/1.1 request to the upstream S3 server (moto) on a fresh connection and
injects the faults its rules name: a connection reset, a 500 or 503 answer in S3's XML, a body
trickled slowly, a body cut in half, or the whole server going away (listener and connections
closed) for a while and coming back on the same port, as a restarted server does.

Usage: fault_proxy.py PORT UPSTREAM_PORT RULES_JSON LOG_PATH
RULES_JSON is a list of {"match": substring of the request line, "fault": reset | 500 | 503 |
slow | cut | down, "nth": [1-based ordinals among requests matching this rule] or "all": true,
"delay": seconds between slow chunks, "seconds": how long `down` lasts}. The first rule whose
ordinal hits applies. Each request is logged to LOG_PATH as one JSON line (its request line and
fault), flushed at once, so the test can assert that the faults were really injected.

Written by hand because it must cut connections at chosen points of an exchange, which no
off-the-shelf proxy in the test venv does.
"""

import json
import socket
import struct
import sys
import threading
import time

PORT = int(sys.argv[1])
UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
RULES = json.loads(sys.argv[3])
LOG = open(sys.argv[4], "a", buffering=1)

lock = threading.Lock()
counts = [0] * len(RULES)
open_sockets = set()
down_until = [0.0]


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def read_exact(sock, data, length):
    while len(data) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_body(sock, head, rest):
    length = header(head, b"content-length")
    if length is not None:
        return read_exact(sock, rest, int(length))
    if (header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return rest


def with_connection_close(head):
    lines = [
        l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")
    ]
    return b"\r\n".join(lines + [b"Connection: close"])


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def log(entry):
    # Under the lock: a text file written from several threads at once can lose lines.
    with lock:
        LOG.write(json.dumps(entry) + "\n")
        LOG.flush()


def choose_fault(request_line):
    with lock:
        for i, rule in enumerate(RULES):
            if rule["match"] in request_line:
                counts[i] += 1
                if rule.get("all") or counts[i] in rule.get("nth", []):
                    return rule
    return None


def error_answer(status):
    code, text = ("InternalError", "Internal Server Error") if status == 500 else (
        "SlowDown", "Service Unavailable")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>'
        "<Message>injected by fault_proxy</Message></Error>" % code
    ).encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, text.encode(), len(body))
    ) + body


def forward(head, body):
    upstream = socket.create_connection(UPSTREAM)
    upstream.sendall(with_connection_close(head) + b"\r\n\r\n" + body)
    response = b""
    while True:
        chunk = upstream.recv(65536)
        if not chunk:
            break
        response += chunk
    upstream.close()
    return response


def handle(client):
    try:
        head, rest = read_head(client)
        if head is None:
            client.close()
            return
        body = read_body(client, head, rest)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        rule = choose_fault(request_line)
        fault = rule["fault"] if rule else None
        log({"request": request_line, "fault": fault})
        if fault == "reset":
            reset(client)
            return
        if fault in ("500", "503"):
            client.sendall(error_answer(int(fault)))
            client.close()
            return
        if fault == "down":
            reset(client)
            go_down(float(rule.get("seconds", 1.0)))
            return
        response = forward(head, body)
        response_head, _, response_body = response.partition(b"\r\n\r\n")
        response_head = with_connection_close(response_head) + b"\r\n\r\n"
        if fault == "cut":
            client.sendall(response_head + response_body[: len(response_body) // 2])
            reset(client)
            return
        if fault == "slow":
            client.sendall(response_head)
            delay = float(rule.get("delay", 0.05))
            for start in range(0, len(response_body), 4096):
                client.sendall(response_body[start : start + 4096])
                time.sleep(delay)
            client.close()
            return
        client.sendall(response_head + response_body)
        client.close()
    except OSError:
        client.close()
    finally:
        with lock:
            open_sockets.discard(client)


listener = [None]


def listen():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", PORT))
    sock.listen(128)
    listener[0] = sock


def go_down(seconds):
    """Closes the listener and every open connection; serve() listens again afterwards."""
    with lock:
        down_until[0] = time.time() + seconds
        sockets = list(open_sockets)
    log({"request": None, "fault": "down", "seconds": seconds})
    try:
        listener[0].shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener[0].close()
    for sock in sockets:
        try:
            reset(sock)
        except OSError:
            pass


def serve():
    listen()
    while True:
        try:
            client, _ = listener[0].accept()
        except OSError:
            wait = down_until[0] - time.time()
            if wait > 0:
                time.sleep(wait)
            listen()
            continue
        with lock:
            open_sockets.add(client)
        threading.Thread(target=handle, args=(client,), daemon=True).start()


serve()
