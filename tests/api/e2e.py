#!/usr/bin/env python3
"""An integrator's walk through the TDS API with libraries nobody at TDS wrote (requests and
Eclipse Paho): token -> create a gateway and a device -> issue its certificate (the ZIP bundle)
-> publish telemetry over MQTT with mutual TLS using that bundle -> read the readings and the
day's consumption back through the API, and receive the reading on /api/v1/events.

Usage: e2e.py --base http://127.0.0.1:8080 --mqtt localhost:8883 --token tds_...
Exits non-zero, saying what went wrong, on the first failed expectation.
"""

import argparse
import datetime as dt
import io
import json
import os
import queue
import ssl
import sys
import tempfile
import threading
import time
import zipfile

import paho.mqtt.client as mqtt
import requests

MAC = "02:e2:e2:00:00:01"


def check(condition, message):
    if not condition:
        print(f"e2e: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def events_listener(base, token, found, stop):
    """Reads /api/v1/events and puts every `readings` event's data on `found`."""
    with requests.get(f"{base}/api/v1/events", headers={"Authorization": f"Bearer {token}"},
                      stream=True, timeout=60) as resp:
        check(resp.status_code == 200, f"events: {resp.status_code}")
        name = None
        for raw in resp.iter_lines(decode_unicode=True):
            if stop.is_set():
                return
            if raw.startswith("event:"):
                name = raw[6:].strip()
            elif raw.startswith("data:") and name == "readings":
                found.put(json.loads(raw[5:].strip()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--mqtt", required=True, help="host:port of the device endpoint")
    p.add_argument("--token", required=True)
    a = p.parse_args()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {a.token}"
    api = f"{a.base}/api/v1"

    tenant = s.get(f"{api}/tenant").json()
    print(f"e2e: tenant {tenant['name']} ({tenant['timezone']}), role {tenant['role']}")
    r = s.post(f"{api}/gateways", json={"mac": MAC, "code": "E2E-1", "name": "Integration gateway",
                                        "expected_interval_s": 60})
    check(r.status_code == 201, f"create gateway: {r.status_code} {r.text}")
    r = s.post(f"{api}/gateways/{MAC}/devices", json={
        "code": "HID-1", "name": "Hidrômetro", "type": "meter", "medium": "water", "kind": "counter",
        "unit": "m³", "slave_id": 1, "register": 1})
    check(r.status_code == 201, f"create device: {r.status_code} {r.text}")
    r = s.post(f"{api}/gateways/{MAC}/certificate", json={"key": "ecdsa-p256"})
    check(r.status_code == 201 and r.headers["content-type"] == "application/zip",
          f"issue certificate: {r.status_code} {r.headers.get('content-type')}")
    bundle = zipfile.ZipFile(io.BytesIO(r.content))
    files = tempfile.mkdtemp()
    for name in ("ca.crt", "client.crt", "client.key"):
        member = next(n for n in bundle.namelist() if n.endswith(name))
        with open(os.path.join(files, name), "wb") as f:
            f.write(bundle.read(member))

    found = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=events_listener, args=(a.base, a.token, found, stop), daemon=True).start()
    time.sleep(1.0)

    host, port = a.mqtt.rsplit(":", 1)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=MAC, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=os.path.join(files, "ca.crt"), certfile=os.path.join(files, "client.crt"),
                   keyfile=os.path.join(files, "client.key"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, props=None: connected.set() if rc == 0 else None
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    check(connected.wait(15), "MQTT connect with the bundle")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    first, second = now - dt.timedelta(minutes=2), now - dt.timedelta(minutes=1)
    for at, value in ((first, 1000.0), (second, 1012.5)):
        payload = json.dumps({"gateway_mac": MAC, "timestamp": at.isoformat().replace("+00:00", "Z"),
                              "leituras": [{"dispositivo_codigo": "HID-1", "valor": value}]})
        info = client.publish(f"tds_new/gateway/{MAC}/telemetria", payload, qos=1)
        info.wait_for_publish(15)
        check(info.is_published(), "PUBACK for the telemetry")
    client.loop_stop()
    client.disconnect()
    print("e2e: published two readings over MQTT/TLS, both acknowledged")

    event = found.get(timeout=15)
    check(event["gateway"] == MAC and event["readings"][0]["device"] == "HID-1", f"event: {event}")
    print(f"e2e: received the reading on /api/v1/events: {event['readings'][0]}")
    stop.set()

    r = s.get(f"{api}/readings", params={"gateway": MAC, "device": "HID-1",
                                         "from": (now - dt.timedelta(hours=1)).isoformat()})
    items = r.json()["items"]
    check([i["value"] for i in items] == [1000.0, 1012.5], f"readings: {r.text}")
    csv_text = s.get(f"{api}/readings", params={"gateway": MAC, "from": (now - dt.timedelta(hours=1)).isoformat()},
                     headers={"Accept": "text/csv"}).text
    check(csv_text.splitlines()[0] == "gateway_mac,device_code,time_utc,time_local,value,unit", csv_text)
    check(len(csv_text.splitlines()) == 3, csv_text)

    zone_today = dt.datetime.now(dt.timezone.utc).astimezone().date()
    deadline = time.time() + 20
    while True:
        # The rollups job runs every second; the day's consumption shows once it has.
        days = [(now - dt.timedelta(days=1)).date(), (now + dt.timedelta(days=1)).date()]
        c = s.get(f"{api}/consumption", params={"scope": "device", "gateway": MAC, "device": "HID-1",
                                                "bucket": "day", "from": str(days[0]), "to": str(days[1])}).json()
        total = sum(series["total"] for series in c["series"])
        if abs(total - 12.5) < 1e-9 or time.time() > deadline:
            break
        time.sleep(0.5)
    check(abs(total - 12.5) < 1e-9, f"consumption of the day: {c}")
    print(f"e2e: the day's consumption is {total} m³ ({zone_today} around now, zone {c['timezone']})")
    print("e2e: OK")


if __name__ == "__main__":
    main()
