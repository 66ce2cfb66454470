#!/usr/bin/env python3
# Used for the S3 figures in docs/benchmarks.md ("a throttling proxy in front of a local S3
# server"): python3 benches/slow-proxy.py LISTEN_PORT S3_PORT 10000000 0.005
# then point cairn at s3:http://127.0.0.1:LISTEN_PORT/bucket/prefix.
# A TCP proxy that limits each connection to RATE bytes/s and delays every
# forwarded read by DELAY seconds: a crude model of a distant S3 endpoint.
import asyncio, sys
LISTEN, UP, RATE, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
async def pipe(r, w, limit):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            await asyncio.sleep(DELAY + (len(data) / RATE if limit else 0))
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        try: w.close()
        except Exception: pass
async def handle(cr, cw):
    ur, uw = await asyncio.open_connection('127.0.0.1', UP)
    await asyncio.gather(pipe(cr, uw, True), pipe(ur, cw, False))
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', LISTEN)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
