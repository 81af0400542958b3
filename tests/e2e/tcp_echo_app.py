"""A tiny line echo server for the TCP e2e tests: answers each line with `<version>:<line>`.

With `--cert/--key` it speaks TLS (the sidecars pass the encrypted bytes through; only
the client and this app see plaintext), so the tests can prove TLS passthrough and SNI
routing. Run by `meshpilot sidecar ... -- python tcp_echo_app.py --port P --version v1`.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl


async def _serve(port: int, version: str, tls: ssl.SSLContext | None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(version.encode() + b":" + line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=tls)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", default="v1")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    asyncio.run(_serve(args.port, args.version, tls))


if __name__ == "__main__":
    main()
