"""Command line: `python -m devstack.otlp_receiver --port 4318 [--ready-file F]`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.otlp_receiver.receiver import OtlpReceiver
from devstack.serving import write_ready_file


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.otlp_receiver",
        description="OTLP/HTTP receiver that counts the spans it is sent (GET /stats).",
    )
    parser.add_argument(
        "--port", type=int, default=4318, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument("--ready-file", type=Path, help="write the ready info here once serving")
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    # Counting only: a benchmark sends tens of thousands of spans and reads their number.
    receiver = OtlpReceiver(port=args.port, keep=False)
    try:
        if args.ready_file is not None:
            write_ready_file(args.ready_file, {"url": receiver.url})
        receiver.serve_forever()
    finally:
        receiver.close()


if __name__ == "__main__":
    main()
