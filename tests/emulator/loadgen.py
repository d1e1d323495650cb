#!/usr/bin/env python3
"""loadgen.py - measure how fast the emulator serves GetSnapshotBlock.

Usage: loadgen.py [--connections 64] [--seconds 10] [--latency-ms 0] [--every 1]
Starts an emulator on a temp data dir with a synthetic snapshot, lists block
tokens, signs one GetSnapshotBlock per block with ebsemu.sigv4.sign, and has
`curl --parallel` (C, one process, keep-alive connections) fetch them over
and over with N connections for S seconds.  Prints requests/s and MiB/s as
curl saw them.  Not part of `make check`: it asserts nothing.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ebsemu.sigv4 import sign  # noqa: E402

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--distinct", type=int, default=0,
                    help="cycle over this many blocks (default: all 8192; each first read pays "
                         "for generating and hashing the block)")
    ap.add_argument("--stored-mib", type=int, default=0,
                    help="serve an imported random image of this size instead of a synthetic one")
    ap.add_argument("--requests", type=int, default=0, help="total (default: ~rate x seconds)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ebsemu-load.")
    try:
        data = os.path.join(tmp, "data")
        emu = [sys.executable, os.path.join(HERE, "ebs-emulator")]
        if a.stored_mib:
            img = os.path.join(tmp, "img")
            with open(img, "wb") as f:
                for _ in range(a.stored_mib):
                    f.write(os.urandom(1 << 20))
            sid = subprocess.check_output(emu + ["import", "--data-dir", data, img]).decode().strip()
            os.unlink(img)
        else:
            sid = subprocess.check_output(emu + ["synth", "--data-dir", data, "--size-gib", "4"]).decode().strip()
        srv = subprocess.Popen(emu + ["serve", "--quiet", "--data-dir", data, "--rate-limit", "0",
                                      "--latency-ms", str(a.latency_ms),
                                      "--port-file", os.path.join(tmp, "port"),
                                      "--admin-port-file", os.path.join(tmp, "aport")])
        try:
            for _ in range(100):
                if os.path.exists(os.path.join(tmp, "aport")):
                    break
                time.sleep(0.1)
            port = open(os.path.join(tmp, "port")).read().strip()
            aport = open(os.path.join(tmp, "aport")).read().strip()
            base = "http://127.0.0.1:%s" % port
            url = "%s/snapshots/%s/blocks?maxResults=10000" % (base, sid)
            req = urllib.request.Request(url, headers=sign("GET", url, {}, b"", AKID, SECRET, "us-east-1"))
            blocks = json.load(urllib.request.urlopen(req))["Blocks"]
            n = a.requests or int(a.seconds * 1500)
            cfg = os.path.join(tmp, "curl.cfg")
            with open(cfg, "w") as f:
                for i in range(n):
                    b = blocks[i % (a.distinct or len(blocks))]
                    u = "%s/snapshots/%s/blocks/%d?blockToken=%s" % (
                        base, sid, b["BlockIndex"], urllib.parse.quote(b["BlockToken"], safe=""))
                    if i:
                        f.write("next\n")
                    f.write('url = "%s"\noutput = "/dev/null"\nfail\nsilent\nshow-error\n' % u)
                    for k, v in sign("GET", u, {}, b"", AKID, SECRET, "us-east-1").items():
                        f.write('header = "%s: %s"\n' % (k, v))
            t = time.monotonic()
            c0 = os.times()
            subprocess.run(["curl", "--parallel", "--parallel-immediate",
                            "--parallel-max", str(a.connections), "-K", cfg], check=True)
            dt = time.monotonic() - t
            c1 = os.times()
            with open("/proc/%d/stat" % srv.pid) as f:
                st = f.read().split(")")[1].split()
            hz = os.sysconf("SC_CLK_TCK")
            srv_cpu = (int(st[11]) + int(st[12])) / hz
            sys.stderr.write("emulator user %.1f s, sys %.1f s\n" % (int(st[11]) / hz, int(st[12]) / hz))
            c = json.load(urllib.request.urlopen("http://127.0.0.1:%s/counters" % aport))
            ok = c["by_status"].get("GetSnapshotBlock", {}).get("200", 0)
            print("%d GetSnapshotBlock (%d OK) with %d connections in %.2f s: %.0f req/s, %.0f MiB/s"
                  % (n, ok, a.connections, dt, n / dt, n * 0.5 / dt))
            print("CPU: emulator %.1f s (including setup), curl %.1f s"
                  % (srv_cpu, (c1.children_user + c1.children_system) -
                     (c0.children_user + c0.children_system)))
        finally:
            srv.terminate()
            srv.wait()
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    import urllib.parse  # noqa: F401
    main()
