#!/usr/bin/env python3
"""What small commits cost SQLite with readings kept in (device, time) order, and with them
appended to an inbox first: a design measurement for goal 1 of issue 20 on SQLite (README,
twenty-third step), made with Python's own sqlite3 module, outside TDS.

    python3 scripts/experiments/sqlite_inbox.py direct DEVICES BATCH RATE SECONDS MOVE_EVERY
    python3 scripts/experiments/sqlite_inbox.py inbox  DEVICES BATCH RATE SECONDS MOVE_EVERY

`direct` commits BATCH readings of random devices at a time, paced to RATE readings/s, into a
WITHOUT ROWID table keyed by (device, time), as TDS stores them: every commit writes a page per
device it touches. `inbox` commits them to an append-only table in a database file of its own
(a few pages a commit) while another process moves the inbox into the (device, time) table every
MOVE_EVERY seconds, in key order, and deletes what it moved. Both use WAL and synchronous=NORMAL,
as TDS does, and a table of 300 readings per device to start from. Prints the readings/s
ingested and the commits' latency (and, for `inbox`, the moves' and deletes' times). Files are
made in a new temporary directory.
"""
import multiprocessing as mp
import random
import shutil
import sqlite3
import sys
import tempfile
import time

COLUMNS = ("device_id INTEGER NOT NULL, time INTEGER NOT NULL, tenant_id INTEGER NOT NULL, "
           "gateway_id INTEGER NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, ingested_at INTEGER NOT NULL")
START = 1_700_000_000_000_000  # microseconds, as TDS stores times on SQLite


def connect(path):
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    # TDS checkpoints on its own, at 40,000 pages; SQLite's default of 1,000 would make `direct`
    # checkpoint every few commits.
    c.execute("PRAGMA wal_autocheckpoint=10000")
    return c


def setup(folder, devices):
    main = connect(f"{folder}/main.db")
    main.execute(f"CREATE TABLE readings ({COLUMNS}, PRIMARY KEY (device_id, time)) WITHOUT ROWID")
    main.execute("BEGIN")
    main.executemany("INSERT INTO readings VALUES (?,?,1,1,?,'m3',0)",
                     ((d, START + i * 1_000_000, 1.0) for d in range(devices) for i in range(300)))
    main.execute("COMMIT")
    connect(f"{folder}/inbox.db").execute(f"CREATE TABLE inbox ({COLUMNS})")


def mover(folder, every, stop, out):
    main = connect(f"{folder}/main.db")
    main.execute(f"ATTACH '{folder}/inbox.db' AS ib")
    took = []
    while not stop.is_set():
        time.sleep(every)
        began = time.perf_counter()
        top = main.execute("SELECT max(rowid) FROM ib.inbox").fetchone()[0]
        if top is None:
            continue
        main.execute("BEGIN")
        main.execute("INSERT INTO main.readings SELECT * FROM ib.inbox WHERE rowid <= ? ORDER BY device_id, time", (top,))
        main.execute("COMMIT")
        moved = time.perf_counter()
        main.execute("BEGIN IMMEDIATE")
        main.execute("DELETE FROM ib.inbox WHERE rowid <= ?", (top,))
        main.execute("COMMIT")
        took.append(((moved - began) * 1000, (time.perf_counter() - moved) * 1000))
    out.put(took)


def ingest(folder, mode, devices, batch, rate, seconds):
    db = connect(f"{folder}/inbox.db" if mode == "inbox" else f"{folder}/main.db")
    insert = f"INSERT INTO {'inbox' if mode == 'inbox' else 'readings'} VALUES (?,?,1,1,?,'m3',0)"
    latest = [START + 400 * 1_000_000] * devices
    latencies = []
    began = time.perf_counter()
    commits = 0
    while time.perf_counter() - began < seconds:
        wait = began + commits * batch / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        rows = []
        for _ in range(batch):
            device = random.randrange(devices)
            latest[device] += 1000
            rows.append((device, latest[device], 1.0))
        t = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, rows)
        db.execute("COMMIT")
        latencies.append((time.perf_counter() - t) * 1000)
        commits += 1
    return commits * batch / (time.perf_counter() - began), sorted(latencies)


def quantile(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    if len(sys.argv) != 7 or sys.argv[1] not in ("direct", "inbox"):
        sys.exit(__doc__)
    mode = sys.argv[1]
    devices, batch, rate = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    seconds, every = float(sys.argv[5]), float(sys.argv[6])
    folder = tempfile.mkdtemp(prefix="sqlite-inbox-")
    try:
        setup(folder, devices)
        stop, out = mp.Event(), mp.Queue()
        worker = mp.Process(target=mover, args=(folder, every, stop, out)) if mode == "inbox" else None
        if worker:
            worker.start()
        per_second, latencies = ingest(folder, mode, devices, batch, rate, seconds)
        took = []
        if worker:
            stop.set()
            took = out.get()
            worker.join()
        print(f"{mode}: {devices} devices, commits of {batch}, offered {rate:,} readings/s: ingested "
              f"{per_second:,.0f} readings/s; commit p50 {quantile(latencies, .5):.2f} ms, "
              f"p99 {quantile(latencies, .99):.2f} ms, max {latencies[-1]:.1f} ms")
        if took:
            moves, deletes = sorted(t[0] for t in took), sorted(t[1] for t in took)
            print(f"  {len(took)} moves every {every} s: move p50 {quantile(moves, .5):.0f} ms, max "
                  f"{moves[-1]:.0f} ms; delete p50 {quantile(deletes, .5):.1f} ms, max {deletes[-1]:.1f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
