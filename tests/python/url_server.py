"""A local HTTP server for the URL-list tests: real images and the ways the web fails.

    python tests/python/url_server.py IMAGES_DIR LOG_FILE

Listens on 127.0.0.1 on a free port and prints the port on the first line of stdout. Every
request is appended to LOG_FILE as one JSON line (client address, method, path), so a test can
check what was asked and from where. Routes (NAME is a file in IMAGES_DIR; a query string is
ignored for routing, so tests can tag their requests with one):

    /img/NAME                 the file, with Content-Length and an ETag
    /missing/NAME             404
    /error/NAME               500 every time
    /flaky/NAME               500 on the first request of this path+query, then the file
    /slow/NAME                headers, half the body, then silence for 5 s
    /truncated/NAME           Content-Length of the whole file, half the body, then closes
    /redirect/N/NAME          N redirects (302) in a chain, then the file
    /xrobots/DIRECTIVE/NAME   the file with X-Robots-Tag: DIRECTIVE ("_" in DIRECTIVE is a space)
    /big/NAME                 Content-Length 10**9 and no body
"""
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

IMAGES = Path(sys.argv[1])
LOG = open(sys.argv[2], "a", encoding="utf-8")
LOCK = threading.Lock()
SEEN = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send_file(self, name, extra_headers=()):
        body = (IMAGES / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
        for key, value in extra_headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        with LOCK:
            count = SEEN.get(self.path, 0) + 1
            SEEN[self.path] = count
            LOG.write(json.dumps({"client": self.client_address[0], "path": self.path,
                                  "host": self.headers.get("Host")}) + "\n")
            LOG.flush()
        route, rest = (segments[0], segments[1:]) if segments else ("", [])
        if route == "img" and len(rest) == 1:
            return self._send_file(rest[0])
        if route == "missing":
            return self._status(404)
        if route == "error":
            return self._status(500)
        if route == "flaky" and len(rest) == 1:
            return self._status(500) if count == 1 else self._send_file(rest[0])
        if route in ("slow", "truncated") and len(rest) == 1:
            body = (IMAGES / rest[0]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if route == "slow":
                time.sleep(5)
            self.close_connection = True
            return None
        if route == "redirect" and len(rest) == 2:
            hops = int(rest[0])
            target = f"/img/{rest[1]}" if hops <= 1 else f"/redirect/{hops - 1}/{rest[1]}"
            if parts.query:
                target += "?" + parts.query
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if route == "xrobots" and len(rest) == 2:
            return self._send_file(rest[1], [("X-Robots-Tag", rest[0].replace("_", " "))])
        if route == "big":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.close_connection = True
            return None
        return self._status(404)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
