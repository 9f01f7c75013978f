"""Transport scenarios for scripts/bench: a minimal raw client (the apply's physical
limit: 5 requests per artifact, threads), and a proxy in front of the registry that plays
a hosted registry's limits (a token bucket answering 429 with Retry-After, or sporadic
429s: a random share of requests refused whatever the rate), its faults (503, 502,
connections reset before the answer) or its distance (every answer late).

The raw client runs in a process of its own (`python3 bench_transport.py raw HOST
CONCURRENCY JOBS.json`, see `main`): in the bench's process its threads shared Python's
lock with the proxy's, so behind the proxy the reference was slowed by the proxy's work
and eigenpub was not.

Standard library only; everything listens on and talks to 127.0.0.1.
"""

import hashlib
import http.client
import http.server
import json
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------
# The raw client
# ---------------------------------------------------------------------------

def artifact(spec_bytes, avs, tag):
    """(config, layer, manifest) bytes of a minimal OCI artifact holding a spec."""
    config = json.dumps({"avs": avs, "tag": tag}, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.eigenruntime.manifest.v1",
        "config": {"mediaType": "application/vnd.eigenruntime.manifest.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.eigenruntime.manifest.spec.v1+yaml",
                    "digest": sha256(spec_bytes), "size": len(spec_bytes)}],
    }, sort_keys=True).encode()
    return config, spec_bytes, manifest


def raw_push(host, jobs, concurrency=32):
    """Pushes every (repository, tag, spec bytes) with 5 requests each: per blob a POST
    starting an upload and a PUT with the bytes, then the manifest PUT. One keep-alive
    connection per thread. Returns (wall seconds, requests, failures)."""
    local = threading.local()
    counts = {"requests": 0, "failed": 0}
    lock = threading.Lock()

    def conn():
        if getattr(local, "c", None) is None:
            local.c = http.client.HTTPConnection(host, timeout=60)
        return local.c

    def request(method, path, body=None, headers=None):
        for _ in range(2):  # one reconnect if the kept-alive connection was closed
            c = conn()
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                r.read()
                with lock:
                    counts["requests"] += 1
                return r
            except (http.client.HTTPException, OSError):
                c.close()
                local.c = None
        raise RuntimeError(f"{method} {path}: connection failed twice")

    def push(job):
        repository, tag, spec = job
        config, layer, manifest = artifact(spec, repository, tag)
        for blob in (config, layer):
            r = request("POST", f"/v2/{repository}/blobs/uploads/")
            location = r.getheader("Location")
            if r.status != 202 or not location:
                raise RuntimeError(f"POST upload: {r.status}")
            if "://" in location:
                location = "/" + location.split("://", 1)[1].split("/", 1)[1]
            sep = "&" if "?" in location else "?"
            r = request("PUT", f"{location}{sep}digest={sha256(blob)}", body=blob,
                        headers={"Content-Type": "application/octet-stream"})
            if r.status != 201:
                raise RuntimeError(f"PUT blob: {r.status}")
        r = request("PUT", f"/v2/{repository}/manifests/{tag}", body=manifest,
                    headers={"Content-Type": OCI_MANIFEST})
        if r.status != 201:
            raise RuntimeError(f"PUT manifest: {r.status}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in [pool.submit(push, j) for j in jobs]:
            try:
                f.result()
            except Exception:  # noqa: BLE001 - counted and reported
                counts["failed"] += 1
    return time.perf_counter() - start, counts["requests"], counts["failed"]


# ---------------------------------------------------------------------------
# The proxy: a token bucket, or faults
# ---------------------------------------------------------------------------

class Server(http.server.ThreadingHTTPServer):
    """The proxy's listener. The backlog is a class attribute: `listen()` runs in the
    constructor, so setting it on the instance afterwards (as this file did) left
    Python's default of 5, and 64 clients connecting at once lost SYNs and waited out
    TCP's 1 s, 3 s, 7 s retransmissions (curl --parallel-max 64 took 15-30 s)."""

    request_queue_size = 1024


class Proxy:
    """Forwards to `upstream`, every answer `latency` seconds late (a hosted registry's
    round trip; set with `reset(mode, latency)`); `mode` is "none", ("bucket", rate, burst),
    ("sporadic", percent, seed): that share of requests, drawn at random (seeded), answered
    429 with `Retry-After: 1` however fast they come, or ("faults", percent, seed): 503,
    502 or a reset. Counts what it forwarded and refused."""

    def __init__(self, upstream, mode="none"):
        self.upstream = upstream
        self.mode = mode
        self.lock = threading.Lock()
        self.reset("none")
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.latency:
                    time.sleep(proxy.latency)
                verdict = proxy.decide()
                if verdict == "reset":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if verdict in (429, 502, 503):
                    payload = b""
                    if verdict == 429:
                        payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limit"}]}'
                    self.send_response(verdict)
                    if verdict == 429:
                        self.send_header("Retry-After", "1")
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                c = getattr(proxy.local, "c", None)
                if c is None:
                    c = proxy.local.c = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "content-length")}
                try:
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                    data = r.read()
                except (http.client.HTTPException, OSError):
                    c.close()
                    proxy.local.c = None
                    self.send_error(502)
                    return
                with proxy.lock:
                    proxy.forwarded += 1
                self.send_response_only(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.local = threading.local()
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def reset(self, mode, latency=0.0):
        with self.lock:
            self.mode = mode
            self.latency = latency
            self.forwarded = 0
            self.refused = {}
            self.tokens = mode[2] if isinstance(mode, tuple) and mode[0] == "bucket" else 0
            self.at = time.monotonic()
            self.rng = random.Random(mode[2] if isinstance(mode, tuple)
                                     and mode[0] in ("faults", "sporadic") else 0)

    def decide(self):
        with self.lock:
            mode = self.mode
            verdict = None
            if isinstance(mode, tuple) and mode[0] == "bucket":
                _, rate, burst = mode
                now = time.monotonic()
                self.tokens = min(burst, self.tokens + (now - self.at) * rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                else:
                    verdict = 429
            elif isinstance(mode, tuple) and mode[0] == "sporadic":
                _, percent, _seed = mode
                if self.rng.random() * 100 < percent:
                    verdict = 429
            elif isinstance(mode, tuple) and mode[0] == "faults":
                _, percent, _seed = mode
                if self.rng.random() * 100 < percent:
                    verdict = self.rng.choice([503, 502, "reset"])
            if verdict is not None:
                self.refused[verdict] = self.refused.get(verdict, 0) + 1
            return verdict

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main(argv):
    """`raw HOST CONCURRENCY JOBS.json`: pushes the jobs ([[repository, tag, spec path]])
    with `raw_push` and prints {"wall", "requests", "failed"} as JSON. The wall is
    `raw_push`'s own (from the first request to the last answer: Python's start and the
    reading of the specs are not counted against the reference)."""
    if len(argv) != 4 or argv[0] != "raw":
        sys.exit("usage: bench_transport.py raw HOST CONCURRENCY JOBS.json")
    host, concurrency = argv[1], int(argv[2])
    with open(argv[3], encoding="utf-8") as f:
        jobs = [(repository, tag, open(path, "rb").read())
                for repository, tag, path in json.load(f)]
    wall, requests, failed = raw_push(host, jobs, concurrency)
    print(json.dumps({"wall": wall, "requests": requests, "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1:])
