"""OTLP/HTTP receiver: takes traces and metrics (protobuf) as a collector would, and keeps them.

The telemetry test serves it from a thread of its own process, to read every span. The tracing
benchmark runs it as a child (`python -m devstack.otlp_receiver`), so that decoding never holds
the benchmark client's GIL, and asks it (`GET /stats`) how many spans arrived.
"""

from devstack.otlp_receiver.receiver import OtlpReceiver, ReceivedPoint, ReceivedSpan

__all__ = ["OtlpReceiver", "ReceivedPoint", "ReceivedSpan"]
