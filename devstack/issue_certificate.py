"""`python -m devstack.issue_certificate <registration-id>`: a device certificate DPS accepts.

Issues a leaf certificate from the running stack's enrollment group CA (stack.json), with the
registration id as subject CN and, optionally, the asset's serial as subject serialNumber, and
writes `<id>.pem` and `<id>.key.pem` for your own device code to present over mutual TLS.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from devstack.certificates import TestCertificateAuthority
from devstack.stack import DEFAULT_DATA_DIR

_REGISTRATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.issue_certificate", description=__doc__
    )
    parser.add_argument("registration_id", help="becomes the subject CN (and the device id)")
    parser.add_argument("--serial", help="subject serialNumber: the asset's serial number")
    parser.add_argument("--group", help="enrollment group id (default: the stack's first)")
    parser.add_argument("--out", type=Path, help="directory (default: .devstack/devices)")
    parser.add_argument("--stack", type=Path, default=DEFAULT_DATA_DIR / "stack.json")
    args = parser.parse_args(argv)
    if not _REGISTRATION_ID.fullmatch(args.registration_id):
        parser.error("a registration id is 1-64 letters, digits or - . _ : (the CN limit)")
    if not args.stack.exists():
        parser.error(f"{args.stack} not found: start the stack first with `make run`")
    stack = json.loads(args.stack.read_text())
    groups = {group["id"]: group for group in stack["enrollmentGroups"]}
    group = groups.get(args.group) if args.group else stack["enrollmentGroups"][0]
    if group is None:
        parser.error(f"no enrollment group {args.group!r}; the stack has {', '.join(groups)}")
    authority = TestCertificateAuthority.from_files(Path(group["caCert"]), Path(group["caKey"]))
    issued = authority.issue_device(args.registration_id, serial_number=args.serial)
    out = args.out or Path(stack["dataDir"]) / "devices"
    cert, key = issued.write(out, args.registration_id)
    print(json.dumps({"registrationId": args.registration_id, "cert": str(cert), "key": str(key)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
