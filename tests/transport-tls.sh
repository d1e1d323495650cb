#!/usr/bin/env bash
# transport-tls.sh - https endpoints are always verified: a self-signed
# server is refused (and not retried), the same server is accepted with
# its certificate given as the CA bundle.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u
requires openssl "$PYTHON3"

TOOL="$top_builddir/src/ebs_tool"
[ -x "$TOOL" ] || fail "$TOOL is not built"
T=$(mktemp -d "${TMPDIR:-/tmp}/ebstls.XXXXXX") || fail mktemp
on_exit "rm -rf '$T'"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 ||
  skip "openssl cannot make a test certificate"

# A tiny TLS server: counts connections, answers every request with a JSON
# page of one block (enough to prove the request went through TLS).
cat >"$T/server.py" <<'PY'
import http.server, ssl, sys, threading
count = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b'{"Blocks":[{"BlockIndex":0,"BlockToken":"dG9r"}],"VolumeSize":1,"BlockSize":524288}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(sys.argv[3] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os; os.rename(sys.argv[3] + ".tmp", sys.argv[3])
srv.serve_forever()
PY
"$PYTHON3" "$T/server.py" "$T/cert.pem" "$T/key.pem" "$T/port" 2>"$T/server.log" &
pid=$!
on_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
for i in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || fail "TLS test server did not start"
url="https://127.0.0.1:$(cat "$T/port")"

export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secretsecret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true HOME="$T" AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EBS

# Not trusted: refused, once, with curl's reason.
timeout 60 "$TOOL" --stats --endpoint "$url" list snap-0123 >/dev/null 2>"$T/err" &&
  fail "a self-signed server was trusted"
grep -qi "certificate" "$T/err" || fail "no certificate error: $(cat "$T/err")"
grep -q "stats requests=1 retries=0" "$T/err" || fail "a verification failure was retried: $(cat "$T/err")"

# Trusted through the CA bundle option: the request goes through.
timeout 60 "$TOOL" --endpoint "$url" --ca-bundle "$T/cert.pem" list snap-0123 >"$T/out" 2>"$T/err" ||
  fail "with --ca-bundle: $(cat "$T/err")"
grep -qx "block 0 dG9r" "$T/out" || fail "unexpected answer: $(cat "$T/out")"
echo "transport-tls: OK"
