"""metadata_server.py - a loopback stand-in for the EC2 instance metadata
service (IMDSv2) and the ECS/EKS container credentials endpoint, for
tests/client-credentials.sh.  Python 3 standard library only.

  metadata_server.py STATE_DIR [--container-token TOKEN] [--fixed AKID:SECRET:TOKEN]

Listens on 127.0.0.1 on a free port and writes the port to STATE_DIR/port.
IMDS paths are served as EC2 does (PUT /latest/api/token with the TTL
header, then /latest/meta-data/iam/security-credentials/[ROLE] with the
token); /container/creds answers like the ECS agent and checks the
Authorization header when --container-token is given.  Every secret it hands
out contains "doNotLeak" so the test can grep for leaks.  With --fixed both
endpoints hand out that one key (for signing real requests to the EBS
emulator started with the same --credentials) instead of numbered ones.

The test talks to it through files, which costs no interpreter start-up:
each request bumps a counter kept in STATE_DIR/count.NAME, and
STATE_DIR/config.json, when present, is read on every request:
{"lifetime": seconds, "imds_mode": "v2"|"v1only"|"norole"}.
"""
import datetime
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE = "ebsfs-test-role"
IMDS_API_TOKEN = "imdsAPITOKENdoNotLeak"

state = {"lifetime": 3600, "imds_mode": "v2", "container_token": None, "dir": ".",
         "fixed": None}
counts = {}
lock = threading.Lock()


def bump(name):
    with lock:
        counts[name] = counts.get(name, 0) + 1
        path = os.path.join(state["dir"], "count." + name)
        with open(path + ".tmp", "w") as f:
            f.write(str(counts[name]))
        os.rename(path + ".tmp", path)
        return counts[name]


def load_config():
    try:
        with open(os.path.join(state["dir"], "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return
    for k in ("lifetime", "imds_mode"):
        if k in cfg:
            state[k] = cfg[k]


def expiration():
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=state["lifetime"])
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):      # quiet; the test reads counters
        pass

    def reply(self, status, body=b"", ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_PUT(self):
        self.read_body()
        load_config()
        if self.path != "/latest/api/token":
            return self.reply(404, "not found")
        bump("imds_token")
        if state["imds_mode"] == "v1only":
            return self.reply(405, "method not allowed")
        ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
        if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.reply(400, "missing or bad ttl")
        self.reply(200, IMDS_API_TOKEN)

    def imds_token_ok(self):
        if state["imds_mode"] == "v1only":
            return True
        return self.headers.get("x-aws-ec2-metadata-token") == IMDS_API_TOKEN

    def do_GET(self):
        load_config()
        if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if not self.imds_token_ok():
                bump("imds_unauthorized")
                return self.reply(401, "unauthorized")
            rest = self.path[len("/latest/meta-data/iam/security-credentials/"):]
            if state["imds_mode"] == "norole":
                return self.reply(404, "not found")
            if rest == "":
                bump("imds_role")
                return self.reply(200, ROLE + "\n")
            if rest != ROLE:
                return self.reply(404, "not found")
            n = bump("imds_creds")
            akid, secret, token = state["fixed"] or (
                f"AKIDIMDS{n:04d}", f"imdsSECRETdoNotLeak{n:04d}", f"imdsSESSIONdoNotLeak{n:04d}")
            return self.reply(200, json.dumps({
                "Code": "Success", "LastUpdated": "2026-11-23T08:00:00Z", "Type": "AWS-HMAC",
                "AccessKeyId": akid, "SecretAccessKey": secret, "Token": token,
                "Expiration": expiration()}), "text/plain")
        if self.path == "/container/creds":
            want = state["container_token"]
            if want is not None and self.headers.get("Authorization") != want:
                bump("container_unauthorized")
                return self.reply(403, json.dumps({"message": "bad token"}), "application/json")
            n = bump("container_creds")
            akid, secret, token = state["fixed"] or (
                f"AKIDCONTAINER{n:04d}", "containerSECRETdoNotLeak", "containerSESSIONdoNotLeak")
            return self.reply(200, json.dumps({
                "AccessKeyId": akid, "SecretAccessKey": secret, "Token": token,
                "Expiration": expiration()}), "application/json")
        self.reply(404, "not found")

def main():
    state["dir"] = sys.argv[1]
    port_file = os.path.join(state["dir"], "port")
    args = sys.argv[2:]
    while args:
        if args[0] == "--container-token" and len(args) > 1:
            state["container_token"] = args[1]
        elif args[0] == "--fixed" and len(args) > 1:
            state["fixed"] = tuple(args[1].split(":", 2))
        else:
            sys.exit(f"metadata_server.py: unknown argument {args[0]}")
        args = args[2:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
