"""The whole local stack on free ports (as `make run` starts it), for end-to-end benchmarks."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from devstack.certificates import TestCertificateAuthority
from devstack.processes import stop_children
from devstack.stack import LocalStack, StackOptions


@dataclass
class RunningStack:
    local: LocalStack
    d: dict[str, Any]
    """stack.json: every address, key and log of the running parts."""
    work_dir: Path

    @property
    def ca(self) -> TestCertificateAuthority:
        """The default enrollment group's CA, which signs device certificates."""
        group = self.d["enrollmentGroups"][0]
        return TestCertificateAuthority.from_files(Path(group["caCert"]), Path(group["caKey"]))

    def assets(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.d["assetApi"],
            headers={"x-api-key": self.d["assetApiKey"]},
            timeout=60,
            **kwargs,
        )


@contextmanager
def running_stack(**host_env: str) -> Iterator[RunningStack]:
    """Start everything in a temporary directory; stop it and delete the directory after."""
    base = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    options = StackOptions.on_free_ports(
        base / "stack", host_env={"DEVSTACK_LOG_LEVEL": "WARNING", **host_env}
    )
    local = LocalStack(options, Console(quiet=True))
    try:
        description = local.start()
        yield RunningStack(local=local, d=description, work_dir=base / "work")
    finally:
        stop_children(list(reversed(local.children)))
        shutil.rmtree(base, ignore_errors=True)
