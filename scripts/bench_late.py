"""An HTTP/1.1 proxy that answers every request N ms late, for scripts/bench phase g's
latency rows: a hosted registry's round trip in front of a loopback docker-registry.

    python3 scripts/bench_late.py UPSTREAM_HOST:PORT LATENCY_MS

prints the port it listens on (127.0.0.1), then proxies until killed. Each request is
read whole, held LATENCY_MS, then sent upstream on the connection's own upstream
connection, and the answer relayed at once (the same latency as the threaded proxy of
scripts/bench_transport.py, which the token bucket and fault rows keep).

Why a second proxy: the threaded one spends about a millisecond of CPU per request
(a thread per connection, http.server's parsing, one lock for all), some 400-1,000
requests a second on this machine, so at 20 ms it, not the latency, set the time of
curl, the raw client and eigenpub alike, and the rows measured the proxy. This one
reads heads with asyncio's buffered reader and copies bodies by `Content-Length` (or
chunk by chunk), a fraction of that. Headers pass untouched (the registry builds upload
`Location`s from `Host`, so uploads come back through the proxy). Standard library only;
loopback only.
"""

import asyncio
import sys


class Closed(Exception):
    """The other end closed the connection between messages."""


async def read_head(reader):
    """A message's start line and headers, through the blank line; Closed at a clean EOF."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise Closed() from None
        raise


def header(head, name):
    """The value of header `name` (lower case bytes) in a head, or None."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def read_body(reader, head, none):
    """The body that follows `head`, as sent (chunked bodies chunk by chunk); None when
    it runs to the end of the connection."""
    if none:
        return b""
    encoding = header(head, b"transfer-encoding")
    if encoding is not None and b"chunked" in encoding.lower():
        out = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            out += line
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                while True:  # trailers, through the blank line
                    line = await reader.readuntil(b"\r\n")
                    out += line
                    if line == b"\r\n":
                        return bytes(out)
            out += await reader.readexactly(size + 2)
    length = header(head, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return None


async def main(upstream, latency_ms):
    host, port = upstream.rsplit(":", 1)
    late = latency_ms / 1000

    async def handle(client_reader, client_writer):
        up = None
        try:
            while True:
                try:
                    head = await read_head(client_reader)
                except Closed:
                    return
                body = await read_body(client_reader, head, False) or b""
                method = head.split(b" ", 1)[0]
                await asyncio.sleep(late)
                for attempt in (0, 1):  # one reconnect if the kept-alive one was closed
                    if up is None:
                        up = await asyncio.open_connection(host, int(port))
                    up_reader, up_writer = up
                    try:
                        up_writer.write(head + body)
                        await up_writer.drain()
                        answer = await read_head(up_reader)
                        break
                    except (Closed, ConnectionError, asyncio.IncompleteReadError):
                        up_writer.close()
                        up = None
                        if attempt:
                            raise
                status = int(answer.split(b" ", 2)[1])
                none = method == b"HEAD" or status in (204, 304) or status < 200
                answer_body = await read_body(up_reader, answer, none)
                until_eof = answer_body is None
                if until_eof:
                    answer_body = await up_reader.read()
                client_writer.write(answer + answer_body)
                await client_writer.drain()
                closing = [header(h, b"connection") for h in (head, answer)]
                if until_eof or any(c is not None and c.lower() == b"close" for c in closing):
                    return
        except (Closed, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            client_writer.close()
            if up is not None:
                up[1].close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
