"""The soak benchmark's reference: a straightforward Python asyncio poller doing the same
fetch-parse-load as mobiflux for every GBFS system once a minute (aiohttp + psycopg 3).

Usage: reference.py SYSTEMS_FILE PG_URL MINUTES
Prints one JSON line per cycle: {"cycle": ..., "secs": ..., "ok": n, "failed": m}.
"""
import asyncio
import json
import sys
import time
from datetime import datetime, timezone

import aiohttp
import psycopg

CONCURRENT = 64
CONNECTIONS = 8

DDL = """
CREATE TABLE IF NOT EXISTS ref_vehicles (
    system text NOT NULL, vehicle_id text NOT NULL, observed_at timestamptz NOT NULL,
    vehicle_type_id text, lat float8, lon float8, is_reserved bool, is_disabled bool,
    current_range_m float8, PRIMARY KEY (system, vehicle_id, observed_at));
CREATE TABLE IF NOT EXISTS ref_station_status (
    system text NOT NULL, station_id text NOT NULL, observed_at timestamptz NOT NULL,
    bikes int, docks int, is_renting bool, PRIMARY KEY (system, station_id, observed_at));
CREATE TABLE IF NOT EXISTS ref_stations (
    system text NOT NULL, station_id text NOT NULL, name text, lat float8, lon float8,
    capacity int, PRIMARY KEY (system, station_id));
"""


def ts(epoch):
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


async def poll(session, pool, system, url):
    async with session.get(url) as r:
        r.raise_for_status()
        disc = await r.json(content_type=None)
    feeds = {f["name"]: f["url"] for f in disc["data"]["en"]["feeds"]}
    docs = {}
    for name in ("station_information", "station_status", "free_bike_status"):
        if name in feeds:
            async with session.get(feeds[name]) as r:
                r.raise_for_status()
                docs[name] = await r.json(content_type=None)
    conn = await pool.get()
    try:
        async with conn.transaction():
            async with conn.cursor() as cur:
                if "station_information" in docs:
                    rows = [(system, s["station_id"], s.get("name"), s["lat"], s["lon"], s.get("capacity"))
                            for s in docs["station_information"]["data"]["stations"]]
                    await cur.executemany(
                        "INSERT INTO ref_stations VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (system, station_id) "
                        "DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon, capacity = EXCLUDED.capacity",
                        rows)
                if "station_status" in docs:
                    d = docs["station_status"]
                    at = ts(d["last_updated"])
                    rows = [(system, s["station_id"], at, s.get("num_bikes_available"), s.get("num_docks_available"), s.get("is_renting"))
                            for s in d["data"]["stations"]]
                    await cur.executemany(
                        "INSERT INTO ref_station_status VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING", rows)
                if "free_bike_status" in docs:
                    d = docs["free_bike_status"]
                    at = ts(d["last_updated"])
                    rows = [(system, b["bike_id"], at, b.get("vehicle_type_id"), b.get("lat"), b.get("lon"),
                             b.get("is_reserved"), b.get("is_disabled"), b.get("current_range_meters"))
                            for b in d["data"]["bikes"]]
                    await cur.executemany(
                        "INSERT INTO ref_vehicles VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING", rows)
    finally:
        pool.put_nowait(conn)


async def main():
    systems = json.load(open(sys.argv[1]))
    pg, minutes = sys.argv[2], int(sys.argv[3])
    pool = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await psycopg.AsyncConnection.connect(pg, autocommit=True))
    conn = await pool.get()
    await conn.execute(DDL)
    pool.put_nowait(conn)
    sem = asyncio.Semaphore(CONCURRENT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENT)) as session:
        async def one(system, url):
            async with sem:
                try:
                    await poll(session, pool, system, url)
                    return True
                except Exception as e:  # a failing system must not stop the others
                    print(json.dumps({"error": f"{system}: {e}"}), file=sys.stderr)
                    return False
        end = time.time() + minutes * 60
        while True:
            now = time.time()
            tick = (int(now) // 60 + 1) * 60
            if tick >= end:
                break
            await asyncio.sleep(tick - now)
            results = await asyncio.gather(*(one(s, u) for s, u in systems.items()))
            print(json.dumps({"cycle": tick, "secs": time.time() - tick,
                              "ok": sum(results), "failed": len(results) - sum(results)}), flush=True)


asyncio.run(main())
