"""Checks docs/protocol-vectors.json with MessagePack and JSON implementations
other than Sacred's own (Python's msgpack and json): every valid vector's
MessagePack bytes must decode to the same value as its JSON text, with
MessagePack bin read as the base64 string JSON carries, and each invalid
MessagePack vector that is structurally broken must be refused by msgpack too.

Run: python scripts/check_vectors.py [path]   (needs `pip install msgpack`)
"""

import base64
import json
import pathlib
import sys

import msgpack

# Invalid vectors that break MessagePack itself (the others are valid
# MessagePack whose content the protocol refuses).
BROKEN_MSGPACK = {
    "msgpack-truncated",
    "msgpack-huge-length",
    "msgpack-huge-string",
    "msgpack-reserved",
    "msgpack-invalid-utf8",
    "msgpack-trailing",
}


def as_json(value):
    """MessagePack value -> the value a JSON frame carries."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def main() -> int:
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/protocol-vectors.json")
    vectors = json.loads(path.read_text())
    failures = []
    for vector in vectors["valid"]:
        from_msgpack = msgpack.unpackb(bytes.fromhex(vector["msgpack"]), raw=False, strict_map_key=True)
        from_json = json.loads(vector["json"])
        if as_json(from_msgpack) != from_json:
            failures.append(f"{vector['name']}: msgpack {from_msgpack!r} != json {from_json!r}")
    broken = [v for v in vectors["invalid"] if v["name"] in BROKEN_MSGPACK]
    for vector in broken:
        try:
            msgpack.unpackb(bytes.fromhex(vector["msgpack"]), raw=False)
        except Exception:  # noqa: BLE001 - any refusal is what we want
            continue
        failures.append(f"{vector['name']}: msgpack accepted a broken frame")
    for failure in failures:
        print("FAIL", failure)
    checked = len(vectors["valid"]) + len(broken)
    print(f"vectors: {checked - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
