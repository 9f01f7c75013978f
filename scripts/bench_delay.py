"""A TCP relay that delays every byte by half a round trip each way, for scripts/bench
phase i: the latency of a registry 20-100 ms away in front of a loopback registry that
serves TLS, which an HTTP proxy cannot add (it would have to end the TLS) and netem
cannot either here (the kernel has no sch_netem, and a qdisc on the host's loopback
would slow everything else on the machine).

    python3 scripts/bench_delay.py UPSTREAM_PORT RTT_MS

prints the port it listens on (127.0.0.1), then relays until killed. Each chunk read
from one side is written to the other half a round trip later, in order; a new
connection waits one round trip before its first byte goes upstream (the TCP
handshake's). Bandwidth is not limited. Standard library only; loopback only.
"""

import asyncio
import sys


async def pump(reader, writer, half):
    """Copies reader to writer, each chunk `half` seconds late."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while True:
            at, data = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + half, data))
            if not data:
                break
        await sender
    finally:
        sender.cancel()


async def main(upstream_port, rtt_ms):
    rtt = rtt_ms / 1000

    async def handle(client_reader, client_writer):
        upstream_writer = None
        try:
            await asyncio.sleep(rtt)
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", upstream_port)
            await asyncio.gather(pump(client_reader, upstream_writer, rtt / 2),
                                 pump(upstream_reader, client_writer, rtt / 2))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_writer, upstream_writer):
                if w is not None:
                    w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
