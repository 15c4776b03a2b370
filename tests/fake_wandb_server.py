"""A stand-in for the W&B server on 127.0.0.1, for the tests of online mode without a network.

It answers what ``wandb.init`` needs (every GraphQL query gets an empty answer, CreateRunFiles
upload URLs pointing back at it) until it "loses the network": from then on every request gets
503 Service Unavailable, as a proxy in front of an unreachable server would answer.
``fail_after="start"`` fails from the first request (W&B unreachable when the run starts),
``fail_after="file_stream"`` once the run streams its first data (the network fails mid-run).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeWandbServer:
    def __init__(self, fail_after: str | None = None):
        self.fail_after = fail_after
        self.down = fail_after == "start"
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: dict) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    query = json.loads(body)
                except ValueError:
                    query = {}
                query = query if isinstance(query, dict) else {}
                name = self.path if "graphql" not in self.path else (query.get("query") or "").split("(")[0].split("{")[0]
                server.seen.append(" ".join(name.split()))
                if server.down:
                    return self._reply(503, {})
                if server.fail_after and server.fail_after in self.path:
                    server.down = True
                    return self._reply(503, {})
                if "CreateRunFiles" in (query.get("query") or ""):
                    port = self.server.server_address[1]
                    files = [{"name": f, "uploadUrl": f"http://127.0.0.1:{port}/upload/{f}"}
                             for f in query["variables"]["files"]]
                    return self._reply(200, {"data": {"createRunFiles": {"runID": "r", "uploadHeaders": [],
                                                                         "files": files}}})
                self._reply(200, {"data": {}})

            def do_PUT(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._reply(503 if server.down else 200, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeWandbServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
