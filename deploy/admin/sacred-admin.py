#!/usr/bin/env python3
"""Calls Sacred's signed admin API (Python's standard library only).

    SACRED_ADMIN_SECRET=... deploy/admin/sacred-admin.py GET /admin/api/connections
    deploy/admin/sacred-admin.py --secret-file /run/secrets/sacred-admin \\
        POST /admin/api/broadcast '{"channel": "news", "data": {"text": "hi"}}'

Prints the JSON answer; exits 1 when the server refuses the call. The
signature is HMAC-SHA256 over five lines: the method, the path with its
query, the Unix time in seconds, a fresh nonce, and the hex SHA-256 of the
body (docs/operations.md, "Admin API").
"""

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request


def signed_headers(secret, name, method, target, body):
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    canonical = "\n".join(
        [method.upper(), target, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    )
    signature = hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()
    return {
        "x-sacred-admin": name,
        "x-sacred-timestamp": timestamp,
        "x-sacred-nonce": nonce,
        "x-sacred-signature": signature,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", help="GET, POST or DELETE")
    parser.add_argument("target", help="the path and query, e.g. /admin/api/audit?limit=10")
    parser.add_argument("body", nargs="?", default="", help="a JSON body")
    parser.add_argument("--url", default=os.environ.get("SACRED_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--name", default=os.environ.get("SACRED_ADMIN_NAME", "admin"))
    parser.add_argument("--secret-file", help="default: the secret in SACRED_ADMIN_SECRET")
    args = parser.parse_args()
    if args.secret_file:
        with open(args.secret_file, "rb") as file:
            secret = file.read().strip()
    elif "SACRED_ADMIN_SECRET" in os.environ:
        secret = os.environ["SACRED_ADMIN_SECRET"].encode()
    else:
        sys.exit("give --secret-file or SACRED_ADMIN_SECRET")
    body = args.body.encode()
    if body:
        json.loads(body)  # refuse a typo here rather than at the server
    headers = signed_headers(secret, args.name, args.method, args.target, body)
    if body:
        headers["content-type"] = "application/json"
    request = urllib.request.Request(
        args.url.rstrip("/") + args.target, data=body or None, method=args.method.upper(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.read().decode())
    except urllib.error.HTTPError as refused:
        print(f"{refused.code}: {refused.read().decode()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
