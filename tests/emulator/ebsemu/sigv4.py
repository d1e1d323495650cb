"""AWS Signature Version 4 verification, rebuilt from the request as it arrived.

The canonical request is computed from the raw path, the raw query string
(decoded, re-encoded with AWS's rules and sorted), and the headers the client
claims it signed.  Nothing the client sent is trusted beyond that: a header
changed in transit, a reordered or re-encoded query, a different path or body
all change the canonical request and so the signature.
"""

import datetime
import hashlib
import hmac
import re
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "ebs"
MAX_SKEW_S = 15 * 60
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
    r"\s*Signature=([0-9a-f]{64})\s*$")
_SPACES = re.compile(r" +")


class AuthError(Exception):
    """A request that fails authentication: (HTTP status, error type, message)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _quote(s, safe):
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(raw_path):
    """Normalise dot segments, then encode each part again (non-S3 services)."""
    path = raw_path or "/"
    parts = []
    for seg in path.split("/"):
        if seg == "..":
            if parts:
                parts.pop()
        elif seg != ".":
            parts.append(seg)
    norm = "/".join(parts)
    if not norm.startswith("/"):
        norm = "/" + norm
    if path.endswith("/") and not norm.endswith("/"):
        norm += "/"
    return _quote(norm, "/~")


def canonical_query(raw_query):
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        k, _, v = item.partition("=")
        # A raw '+' means a space, as on AWS: a client that does not encode
        # '+' in a token is caught here, not in production.
        k = _quote(urllib.parse.unquote_plus(k), "-_.~")
        v = _quote(urllib.parse.unquote_plus(v), "-_.~")
        pairs.append((k, v))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def canonical_header_value(values):
    return ",".join(_SPACES.sub(" ", v.strip()) for v in values)


class Verifier:
    """Holds the accepted credentials and caches derived signing keys."""

    def __init__(self, credentials, region, now=None):
        # credentials: {access_key_id: (secret, session_token or None)}
        self.credentials = dict(credentials)
        self.region = region
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self._keys = {}

    def _signing_key(self, secret, date, region):
        ck = (secret, date, region)
        key = self._keys.get(ck)
        if key is None:
            k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
            k = hmac.new(k, region.encode(), hashlib.sha256).digest()
            k = hmac.new(k, SERVICE.encode(), hashlib.sha256).digest()
            key = hmac.new(k, b"aws4_request", hashlib.sha256).digest()
            if len(self._keys) > 64:
                self._keys.clear()
            self._keys[ck] = key
        return key

    def verify(self, method, raw_path, raw_query, headers, body):
        """headers: callable name -> list of values (case-insensitive) or [].

        body: bytes, or None when the caller knows the payload is unsigned.
        Returns the access key id on success, raises AuthError otherwise.
        """
        auth = headers("authorization")
        if not auth:
            raise AuthError(403, "MissingAuthenticationTokenException",
                            "Missing Authentication Token")
        if len(auth) != 1:
            raise AuthError(400, "IncompleteSignatureException",
                            "Multiple Authorization headers")
        m = _AUTH_RE.match(auth[0].strip())
        if not m:
            raise AuthError(400, "IncompleteSignatureException",
                            "Authorization header requires 'Credential', 'SignedHeaders' "
                            "and 'Signature' parameters (algorithm %s). Authorization=%s"
                            % (ALGORITHM, auth[0].split(" ")[0]))
        credential, signed_headers, signature = m.groups()
        cparts = credential.split("/")
        if len(cparts) != 5:
            raise AuthError(400, "IncompleteSignatureException",
                            "Credential should have exactly 5 slash-separated parts")
        akid, scope_date, scope_region, scope_service, terminator = cparts
        cred = self.credentials.get(akid)
        if cred is None:
            raise AuthError(403, "UnrecognizedClientException",
                            "The security token included in the request is invalid.")
        secret, token = cred

        amz_date = headers("x-amz-date")
        if len(amz_date) != 1:
            raise AuthError(400, "IncompleteSignatureException",
                            "Authorization header requires existence of either a "
                            "'X-Amz-Date' or a 'Date' header.")
        amz_date = amz_date[0].strip()
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise AuthError(400, "IncompleteSignatureException",
                            "Date must be in ISO-8601 'basic format'. Got '%s'." % amz_date)
        now = self._now()
        skew = (now - when).total_seconds()
        if skew > MAX_SKEW_S:
            raise AuthError(403, "InvalidSignatureException",
                            "Signature expired: %s is now earlier than %s (%s - 15 min.)"
                            % (amz_date, (now - datetime.timedelta(seconds=MAX_SKEW_S)).strftime("%Y%m%dT%H%M%SZ"),
                               now.strftime("%Y%m%dT%H%M%SZ")))
        if -skew > MAX_SKEW_S:
            raise AuthError(403, "InvalidSignatureException",
                            "Signature not yet current: %s is still later than %s (%s + 15 min.)"
                            % (amz_date, (now + datetime.timedelta(seconds=MAX_SKEW_S)).strftime("%Y%m%dT%H%M%SZ"),
                               now.strftime("%Y%m%dT%H%M%SZ")))
        if scope_date != amz_date[:8]:
            raise AuthError(403, "InvalidSignatureException",
                            "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                            "version of date from HTTP: '%s' != '%s', from '%s'."
                            % (scope_date, amz_date[:8], amz_date))
        if scope_region != self.region:
            raise AuthError(403, "InvalidSignatureException",
                            "Credential should be scoped to a valid region. ")
        if scope_service != SERVICE:
            raise AuthError(403, "InvalidSignatureException",
                            "Credential should be scoped to correct service: '%s'. " % SERVICE)
        if terminator != "aws4_request":
            raise AuthError(403, "InvalidSignatureException",
                            "Credential should be scoped with a valid terminator: 'aws4_request', "
                            "not '%s'." % terminator)

        names = signed_headers.split(";")
        if names != sorted(names) or any(n != n.lower() for n in names):
            raise AuthError(403, "InvalidSignatureException",
                            "SignedHeaders must be lowercase and sorted")
        if "host" not in names:
            raise AuthError(403, "InvalidSignatureException",
                            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        if "x-amz-date" not in names:
            raise AuthError(403, "InvalidSignatureException",
                            "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")

        sent_token = headers("x-amz-security-token")
        if token is not None:
            if len(sent_token) != 1 or sent_token[0] != token:
                raise AuthError(403, "UnrecognizedClientException",
                                "The security token included in the request is invalid.")
            if "x-amz-security-token" not in names:
                raise AuthError(403, "InvalidSignatureException",
                                "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.")
        elif sent_token:
            raise AuthError(403, "UnrecognizedClientException",
                            "The security token included in the request is invalid.")

        content_sha = headers("x-amz-content-sha256")
        if content_sha:
            payload_hash = content_sha[0].strip()
            if payload_hash != UNSIGNED:
                actual = hashlib.sha256(body or b"").hexdigest()
                if payload_hash != actual:
                    raise AuthError(400, "XAmzContentSHA256Mismatch",
                                    "The provided 'x-amz-content-sha256' header does not match "
                                    "what was computed.")
        else:
            payload_hash = hashlib.sha256(body or b"").hexdigest() if body else EMPTY_SHA256

        canon_headers = "".join(
            "%s:%s\n" % (n, canonical_header_value(headers(n))) for n in names)
        creq = "\n".join([method, canonical_uri(raw_path), canonical_query(raw_query),
                          canon_headers, signed_headers, payload_hash])
        scope = "/".join(cparts[1:])
        sts = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(creq.encode("utf-8")).hexdigest()])
        key = self._signing_key(secret, scope_date, scope_region)
        expected = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise AuthError(403, "InvalidSignatureException",
                            "The request signature we calculated does not match the signature "
                            "you provided. Check your AWS Secret Access Key and signing method. "
                            "Consult the service documentation for details.\n\n"
                            "The Canonical String for this request should have been\n'%s'\n\n"
                            "The String-to-Sign should have been\n'%s'\n" % (creq, sts))
        return akid


def sign(method, url, headers, body, akid, secret, region, token=None, unsigned=False, now=None):
    """Sign a request the way botocore does; returns the headers to send.

    For tools (benchmarks, replays) that need signed requests without botocore.
    headers: dict of extra headers (all signed)."""
    u = urllib.parse.urlsplit(url)
    t = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = t.strftime("%Y%m%dT%H%M%SZ")
    h = {k.lower(): str(v) for k, v in headers.items()}
    h["host"] = u.netloc
    h["x-amz-date"] = amz_date
    if token:
        h["x-amz-security-token"] = token
    if unsigned:
        h["x-amz-content-sha256"] = UNSIGNED
        payload = UNSIGNED
    else:
        payload = hashlib.sha256(body or b"").hexdigest()
    names = sorted(h)
    creq = "\n".join([method, canonical_uri(u.path), canonical_query(u.query),
                      "".join("%s:%s\n" % (n, canonical_header_value([h[n]])) for n in names),
                      ";".join(names), payload])
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, SERVICE)
    sts = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = Verifier({}, region)._signing_key(secret, amz_date[:8], region)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, akid, scope, ";".join(names), sig)
    del h["host"]
    return h
