#!/usr/bin/env python3
"""A gateway's side of certificate renewal (SPEC §3), written with Eclipse Paho, as an
independent client of TDS's MQTT endpoint: bins/tds/tests/it/renewal.rs runs it against a real
`tds serve`.

The gateway's files are in --dir: ca.crt, client.crt, client.key (a bundle from `tds cert issue`).
It connects with its pair, subscribes to its exact cert_update topic and waits for the offer
(retained). For {"csr_required": true} it makes a P-256 key itself, sends a CSR on cert_csr and
waits for the certificate. It checks the new certificate (CN = its MAC, dates, chain to its CA),
writes it beside the current pair, reconnects with it (going back to the old pair if the new one
is refused), subscribes again to see the offer cleared, and then moves the new pair into place
(the old pair is kept as old.crt/old.key). It prints one JSON object with what it saw; the exit
status is 0 only when the renewal went through.
"""

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt


def openssl(*args, stdin=None):
    out = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)
    return out.returncode == 0, out.stdout + out.stderr


class Session:
    """One MQTT connection with a certificate pair; messages on cert_update go to a queue."""

    def __init__(self, a, cert, key):
        self.a = a
        self.topic = f"tds_new/gateway/{a.mac}/cert_update"
        self.messages = []
        self.cond = threading.Condition()
        self.connack = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.mac, protocol=mqtt.MQTTv311)
        self.client.tls_set(ca_certs=os.path.join(a.dir, "ca.crt"), certfile=cert, keyfile=key,
                            tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.on_subscribe = lambda c, u, mid, codes, props=None: None

    def on_connect(self, client, userdata, flags, rc, props=None):
        with self.cond:
            self.connack = rc
            self.cond.notify_all()
        if rc == 0:
            client.subscribe(self.topic, qos=1)

    def on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.retain, msg.payload.decode()))
            self.cond.notify_all()

    def connect(self):
        """True when the server accepted the connection (CONNACK 0) in time."""
        try:
            self.client.connect(self.a.host, self.a.port, keepalive=30)
        except (ssl.SSLError, OSError):
            return False
        self.client.loop_start()
        with self.cond:
            self.cond.wait_for(lambda: self.connack is not None, timeout=self.a.timeout)
            accepted = self.connack is not None and not self.connack.is_failure
        if not accepted:
            self.close()
        return accepted

    def next_message(self, timeout):
        with self.cond:
            if not self.cond.wait_for(lambda: self.messages, timeout=timeout):
                return None
            return self.messages.pop(0)

    def publish(self, topic, payload):
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(self.a.timeout)
        return info.is_published()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def check_certificate(a, path):
    """The gateway's checks before it swaps: chain to its CA, CN = its MAC, within its dates."""
    ok, text = openssl("verify", "-CAfile", os.path.join(a.dir, "ca.crt"), path)
    if not ok:
        return f"chain: {text.strip()}"
    ok, subject = openssl("x509", "-in", path, "-noout", "-subject", "-nameopt", "multiline")
    if not ok or f"commonName                = {a.mac}" not in subject:
        return f"CN is not {a.mac}: {subject.strip()}"
    ok, text = openssl("x509", "-in", path, "-noout", "-checkend", "0")
    if not ok:
        return "expired"
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--timeout", type=float, default=15.0)
    a = p.parse_args()
    seen = {"retained": False, "csr_sent": False, "swapped": False, "cleared": False, "rolled_back": False}

    def done(ok, why=""):
        seen["ok"] = ok
        if why:
            seen["error"] = why
        print(json.dumps(seen))
        sys.exit(0 if ok else 1)

    old_cert, old_key = os.path.join(a.dir, "client.crt"), os.path.join(a.dir, "client.key")
    new_cert, new_key = os.path.join(a.dir, "new.crt"), os.path.join(a.dir, "new.key")
    s = Session(a, old_cert, old_key)
    if not s.connect():
        done(False, "the current certificate was refused")
    got = s.next_message(a.timeout)
    if got is None:
        done(False, "no cert_update offer")
    retain, payload = got
    seen["retained"] = retain
    offer = json.loads(payload)
    if offer.get("csr_required"):
        # CSR mode: the key is made here and never leaves the gateway.
        csr = os.path.join(a.dir, "new.csr")
        ok, text = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                           "-keyout", new_key, "-out", csr, "-subj", f"/CN={a.mac}")
        if not ok:
            done(False, f"openssl req: {text}")
        with open(csr) as f:
            csr_pem = f.read()
        seen["csr_sent"] = s.publish(f"tds_new/gateway/{a.mac}/cert_csr", json.dumps({"csr_pem": csr_pem}))
        got = s.next_message(a.timeout)
        if got is None:
            done(False, "no certificate for the CSR")
        offer = json.loads(got[1])
        if "new_key" in offer:
            done(False, "a key came back in CSR mode")
    else:
        with open(new_key, "w") as f:
            f.write(offer["new_key"])
        os.chmod(new_key, 0o600)
    seen["expires_at"] = offer["expires_at"]
    with open(new_cert, "w") as f:
        f.write(offer["new_cert"])
    problem = check_certificate(a, new_cert)
    if problem:
        done(False, f"the new certificate fails the gateway's checks: {problem}")
    s.close()

    # Reconnect with the new pair; back to the old one if it is refused.
    s = Session(a, new_cert, new_key)
    if not s.connect():
        seen["rolled_back"] = Session(a, old_cert, old_key).connect()
        done(False, "the new certificate was refused")
    seen["swapped"] = True
    # Confirmed by connecting: the retained offer is cleared (an empty retained message, or none).
    got = s.next_message(2.0)
    seen["cleared"] = got is None or got[1] == ""
    s.close()
    shutil.move(old_cert, os.path.join(a.dir, "old.crt"))
    shutil.move(old_key, os.path.join(a.dir, "old.key"))
    shutil.move(new_cert, old_cert)
    shutil.move(new_key, old_key)
    done(seen["retained"] and seen["cleared"])


if __name__ == "__main__":
    main()
