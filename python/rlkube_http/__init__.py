"""A small JSON-over-HTTP server shared by the trainer and the policy server (stdlib only)."""
from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Tuple


class ApiError(Exception):
    """A refusal with a machine reason (CamelCase) and a human message; becomes {reason, message}."""

    def __init__(self, reason: str, message: str, status: int = 400):
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status


Route = Callable[[dict], dict]


def make_server(host: str, port: int, routes: Dict[Tuple[str, str], Route], verbose: bool = False) -> ThreadingHTTPServer:
    """routes: {(METHOD, path): handler(body) -> JSON-able dict}. Handlers raise ApiError to refuse;
    anything else becomes a 500 with reason InternalError (logged), never a dead server."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            try:
                route = routes.get((method, path))
                if route is None:
                    known = any(p == path for _, p in routes)
                    raise ApiError("MethodNotAllowed" if known else "NotFound", f"{method} {path}", 405 if known else 404)
                body = {}
                if method == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length) if length > 0 else b""
                    try:
                        body = json.loads(raw or b"null")
                    except (ValueError, UnicodeDecodeError) as e:
                        raise ApiError("InvalidJson", f"request body is not JSON: {e}") from None
                    if not isinstance(body, dict):
                        raise ApiError("InvalidJson", "request body must be a JSON object")
                self._send(200, route(body))
            except ApiError as e:
                self._send(e.status, {"reason": e.reason, "message": e.message})
            except Exception as e:  # noqa: BLE001 - the server must outlive any single request
                traceback.print_exc(file=sys.stderr)
                self._send(500, {"reason": "InternalError", "message": f"{type(e).__name__}: {e}"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, fmt: str, *args) -> None:
            if verbose:
                sys.stderr.write(json.dumps({"event": "http", "line": fmt % args}) + "\n")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    # As a container's PID 1 the process gets no default SIGTERM action: without a handler, a pod's stop waits
    # out its whole grace period. SIGTERM ends serve_forever() the way Ctrl-C does (KeyboardInterrupt).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    return server


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


def announce_ready(**fields) -> None:
    print(json.dumps({"event": "ready", **fields}), flush=True)


# Request field helpers: each names the field it refuses.

def req_int(obj: dict, key: str, where: str, *, minimum: int = None, maximum: int = None, default=None) -> int:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError("BadRequest", f"{where}{key} must be an integer")
    if minimum is not None and v < minimum:
        raise ApiError("BadRequest", f"{where}{key} must be >= {minimum}")
    if maximum is not None and v > maximum:
        raise ApiError("BadRequest", f"{where}{key} must be <= {maximum}")
    return v


def req_number(obj: dict, key: str, where: str, *, minimum: float = None, default=None) -> float:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise ApiError("BadRequest", f"{where}{key} must be a finite number")
    if minimum is not None and v < minimum:
        raise ApiError("BadRequest", f"{where}{key} must be >= {minimum}")
    return float(v)


def req_list(obj: dict, key: str, where: str, *, nonempty: bool = False) -> list:
    v = obj.get(key)
    if not isinstance(v, list):
        raise ApiError("BadRequest", f"{where}{key} must be a list")
    if nonempty and not v:
        raise ApiError("BadRequest", f"{where}{key} must not be empty")
    return v
