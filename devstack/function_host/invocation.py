"""Call a user function like the Python worker: keyword args by binding name, plus `context`."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import azure.functions as func
from azure.functions import _abc as func_abc

from devstack.function_host.app_loader import FunctionSpec
from devstack.function_host.errors import InvocationFailed

logger = logging.getLogger("devstack.function_host.invocation")


class DevTraceContext(func_abc.TraceContext):
    """W3C trace context from the incoming `traceparent`, or a fresh one."""

    def __init__(self, trace_parent: str | None, trace_state: str | None) -> None:
        self._parent = trace_parent or f"00-{uuid.uuid4().hex}-{os.urandom(8).hex()}-00"
        self._state = trace_state or ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class DevRpcException(func_abc.RpcException):
    """No previous failure: the dev host does not retry invocations."""

    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class DevRetryContext(func_abc.RetryContext):
    """First attempt, no retry policy."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> func_abc.RpcException:
        return DevRpcException()


class InvocationContext(func.Context):
    """The `context` argument of a function, as the worker builds it."""

    def __init__(
        self, *, function_name: str, function_directory: str, trace_context: DevTraceContext
    ) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = trace_context
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        # azure-functions annotates a type, but the worker hands out a threading.local instance.
        return cast("type[threading.local]", self._local)

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> func_abc.TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> func_abc.RetryContext:
        return DevRetryContext()


class OutputValue(func.Out[Any]):
    """An output binding parameter (`func.Out[T]`); the host reads it after the call."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass
class InvocationResult:
    """What a function produced: its return value and any output binding values."""

    invocation_id: str
    return_value: Any
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Invoker:
    """Runs functions: async ones on the event loop, sync ones in a worker thread."""

    function_directory: str

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        *,
        reason: str,
        trace_parent: str | None = None,
        trace_state: str | None = None,
    ) -> InvocationResult:
        """Invoke once; on failure log the traceback and raise InvocationFailed."""
        context = InvocationContext(
            function_name=spec.name,
            function_directory=self.function_directory,
            trace_context=DevTraceContext(trace_parent, trace_state),
        )
        outputs = {
            b.name: OutputValue() for b in spec.bindings if b.is_output and b.name != "$return"
        }
        kwargs: dict[str, Any] = {spec.trigger.name: trigger_value}
        kwargs.update(outputs)
        for binding in spec.bindings:
            if binding.name not in kwargs and binding.name != "$return":
                kwargs[binding.name] = None
        if spec.wants_context:
            kwargs["context"] = context
        kwargs = {k: v for k, v in kwargs.items() if k in spec.parameters}

        invocation_id = context.invocation_id
        logger.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id
        )
        started = time.perf_counter()
        try:
            if spec.is_async:
                value = await spec.user_function(**kwargs)
            else:
                value = await asyncio.to_thread(spec.user_function, **kwargs)
        except Exception:
            logger.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )
            raise InvocationFailed(spec.name, invocation_id) from None
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            spec.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        result = InvocationResult(
            invocation_id=invocation_id,
            return_value=value,
            outputs={name: out.get() for name, out in outputs.items()},
        )
        _log_outputs(spec, result)
        return result


def _log_outputs(spec: FunctionSpec, result: InvocationResult) -> None:
    for binding in spec.bindings:
        if binding.type != "http" and result.outputs.get(binding.name) is not None:
            logger.info(
                "output binding set; the dev host does not deliver it",
                extra={"function": spec.name, "binding": binding.name, "type": binding.type},
            )
