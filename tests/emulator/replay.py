#!/usr/bin/env python3
"""replay.py - re-send a request botocore logged with --debug, optionally tampered.

Usage: replay.py DEBUG_LOG [--path-sub OLD NEW] [--query-sub OLD NEW]
                 [--header NAME VALUE] [--drop-header NAME]
Finds the last "Sending http request" line of a botocore debug log, re-sends
that exact request (method, URL, headers) with urllib, and prints
"STATUS ERRORTYPE" - so tests can show that an untouched replay is accepted
and any change to what was signed is rejected.
"""

import ast
import re
import sys
import urllib.error
import urllib.parse
import urllib.request


def main(argv):
    log = open(argv[0]).read()
    reqs = re.findall(r"Sending http request: <AWSPreparedRequest stream_output=\w+, "
                      r"method=(\w+), url=(\S+), headers=(\{.*?\})>", log)
    if not reqs:
        sys.exit("replay.py: no request in %s" % argv[0])
    method, url, hdrs = reqs[-1]
    headers = {k: (v.decode() if isinstance(v, bytes) else v)
               for k, v in ast.literal_eval(hdrs).items()}
    parts = urllib.parse.urlsplit(url)
    path, query = parts.path, parts.query
    i = 1
    while i < len(argv):
        opt = argv[i]
        if opt == "--path-sub":
            path = path.replace(argv[i + 1], argv[i + 2]); i += 3
        elif opt == "--query-sub":
            query = query.replace(argv[i + 1], argv[i + 2]); i += 3
        elif opt == "--header":
            headers[argv[i + 1]] = argv[i + 2]; i += 3
        elif opt == "--drop-header":
            headers.pop(argv[i + 1], None); i += 2
        else:
            sys.exit("replay.py: unknown option %s" % opt)
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            print(r.status, "-")
    except urllib.error.HTTPError as e:
        print(e.code, (e.headers.get("x-amzn-ErrorType") or "-").split(":")[0])


if __name__ == "__main__":
    main(sys.argv[1:])
