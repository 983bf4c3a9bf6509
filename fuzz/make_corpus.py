#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target into fuzz/corpus/<target>/seed-*.

Seeds are small, valid (or nearly valid) inputs that get each target past its first checks: a
telemetry batch and topic, gateway/manifest/device CSV files, CSRs in PEM and DER (made with
openssl), and MQTT 3.1.1 conversations (CONNECT, PUBLISH, SUBSCRIBE, PINGREQ, DISCONNECT)
encoded by hand from the specification. Run it again after changing a target's input layout.
"""
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MAC = "aa:bb:cc:00:00:01"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def batch(mac, leituras, ts="2026-01-15T10:00:00Z"):
    return ('{"gateway_mac":"%s","timestamp":"%s","leituras":[%s]}' % (mac, ts, ",".join(leituras))).encode()


# telemetry_batch: knob byte (zone, retention, size limit) + payload.
good = batch("aa:bb:cc:dd:ee:ff", [
    '{"dispositivo_codigo":"D01","valor":12.5,"unidade":"kWh"}',
    '{"dispositivo_codigo":"d02","valor":"1e3","timestamp":"2026-01-15T09:59:00-03:00"}',
    '{"dispositivo_codigo":"D03","valor":"12,5"}',
    '{"dispositivo_codigo":"D01","valor":1,"unidade":"m3","timestamp":"2026-01-15 07:00:00"}',
    '"not an object"',
])
write("telemetry_batch", "batch", b"\x00" + good)
write("telemetry_batch", "batch-retention", b"\x05" + b"\xef\xbb\xbf" + good)
write("telemetry_batch", "heartbeat", b"\x01" + batch("AA-BB-CC-DD-EE-FF", [], "2026-01-15T10:00:00"))
write("telemetry_batch", "topic", b"\x00tds_new/gateway/aa:bb:cc:dd:ee:ff/telemetria")
write("telemetry_batch", "topic-alias", b"\x00tds_new/devices/AA-BB-CC-DD-EE-FF/telemetry")

# csv_import: knob byte (0xff: 16 rows, 1024 bytes) + file.
write("csv_import", "gateways",
      b"\xff" + "mac,code,name,model,serial_number,device_id\naa:bb:cc:dd:ee:01,GW-001,Bloco A,DCU-8210,SN1,\n"
                "# comment\n\nAA-BB-CC-DD-EE-02,gw_2,\"Bloco \"\"B\"\"\"\n".encode())
write("csv_import", "manifest",
      b"\xff" + b"mac,serial_number,cert_serial,expires_at\naa:bb:cc:00:00:01,SN-1,0a1b2c,2036-01-01T00:00:00Z\n"
                b"aa:bb:cc:00:00:02,SN 2,ff,2036-01-01T00:00:00Z\n")
write("csv_import", "devices",
      b"\xff" + "gateway_mac,code,name,type,medium,kind,unit,slave_id,register\n"
                "aa:bb:cc:dd:ee:01,D01,Água fria,MEDIDOR,water,counter,m3,1,100\n"
                "aa:bb:cc:dd:ee:01,T01,Temperatura,SENSOR,other,gauge,°C,,\n".encode())

# csr: byte 0 even = PEM text, odd = DER.
with tempfile.TemporaryDirectory() as tmp:
    for kind, args in (("p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                       ("rsa2048", ["-newkey", "rsa:2048"])):
        key, pem = os.path.join(tmp, kind + ".key"), os.path.join(tmp, kind + ".csr")
        subprocess.run(["openssl", "req", "-new", *args, "-nodes", "-subj", "/CN=AA:BB:CC:00:00:01",
                        "-keyout", key, "-out", pem], check=True, capture_output=True)
        der = subprocess.run(["openssl", "req", "-in", pem, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        if kind == "p256":
            write("csr", kind + "-pem", b"\x00" + open(pem, "rb").read())
        write("csr", kind + "-der", b"\x01" + der)


# mqtt_session: byte 0 even = certificate credentials, odd = plain listener (password "fuzz").
def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(client_id, keep_alive=30, user=None, password=None):
    flags = 0x02 | (0x80 if user is not None else 0) | (0x40 if password is not None else 0)
    body = s("MQTT") + bytes([4, flags]) + keep_alive.to_bytes(2, "big") + s(client_id)
    if user is not None:
        body += s(user)
    if password is not None:
        body += s(password)
    return packet(0x10, body)


def publish(topic, payload, qos=0, pkid=1, retain=False):
    body = s(topic) + (pkid.to_bytes(2, "big") if qos else b"") + payload
    return packet(0x30 | (qos << 1) | int(retain), body)


def subscribe(pkid, topic, qos=1):
    return packet(0x82, pkid.to_bytes(2, "big") + s(topic) + bytes([qos]))


telemetry = "tds_new/gateway/%s/telemetria" % MAC
reading = batch(MAC, ['{"dispositivo_codigo":"D01","valor":42.5,"unidade":"kWh"}',
                      '{"dispositivo_codigo":"X9","valor":1}'], "2026-11-30T10:00:00Z")
session = (publish(telemetry, reading, qos=1, pkid=1)
           + publish("tds_new/gateway/%s/status" % MAC, b"online", qos=0)
           + subscribe(2, "tds_new/gateway/%s/cert_update" % MAC)
           + packet(0xC0, b"")
           + publish("tds_new/devices/%s/telemetry" % MAC, b"{not json", qos=1, pkid=3)
           + packet(0xE0, b""))
write("mqtt_session", "certificate", b"\x00" + connect(MAC) + session)
write("mqtt_session", "password", b"\x01" + connect(MAC, user=MAC, password="fuzz") + session)
write("mqtt_session", "acl", b"\x00" + connect(MAC) + publish("tds_new/gateway/aa:bb:cc:00:00:02/telemetria", reading, qos=1))
write("mqtt_session", "bad-client-id", b"\x00" + connect("someone-else"))
