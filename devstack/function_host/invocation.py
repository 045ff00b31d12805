"""Call a user function like the Python worker: keyword args by binding name, plus `context`."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import azure.functions as func
from azure.functions import _abc as func_abc

from devstack.function_host.app_loader import FunctionSpec
from devstack.function_host.errors import InvocationFailed
from devstack.function_host.output_bindings import OutputBindingError, OutputBindings

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
    """The previous attempt's failure as the host reports it (empty on a first attempt)."""

    def __init__(self, message: str = "", source: str = "", stack_trace: str = "") -> None:
        self._message = message
        self._source = source
        self._stack_trace = stack_trace

    @classmethod
    def from_error(cls, error: BaseException | None) -> DevRpcException:
        """Describe a Python exception like the worker does when it reports a failure."""
        if error is None:
            return cls()
        return cls(
            message=f"{type(error).__name__}: {error}",
            source=type(error).__module__,
            stack_trace="".join(traceback.format_exception(error)),
        )

    @property
    def source(self) -> str:
        return self._source

    @property
    def stack_trace(self) -> str:
        return self._stack_trace

    @property
    def message(self) -> str:
        return self._message


class DevRetryContext(func_abc.RetryContext):
    """Attempt number and policy limit; 0/0 with an empty exception on a first attempt."""

    def __init__(
        self,
        retry_count: int = 0,
        max_retry_count: int = 0,
        exception: DevRpcException | None = None,
    ) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count
        self._exception = exception or DevRpcException()

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> func_abc.RpcException:
        return self._exception


class InvocationContext(func.Context):
    """The `context` argument of a function, as the worker builds it."""

    def __init__(
        self,
        *,
        function_name: str,
        function_directory: str,
        trace_context: DevTraceContext,
        retry_context: DevRetryContext | None = None,
    ) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = trace_context
        self._retry_context = retry_context or DevRetryContext()
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
        return self._retry_context


class OutputValue(func.Out[Any]):
    """An output binding parameter (`func.Out[T]`); the host reads it after the call."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass(frozen=True)
class DeferredValue:
    """A trigger value the worker builds only once the invocation has started.

    The worker decodes the trigger data inside the invocation, so a decoding error (or a
    function that failed to load) is reported as a failed execution, not as a host error.
    """

    build: Callable[[], Any]


@dataclass
class InvocationResult:
    """What a function produced: its return value and any output binding values."""

    invocation_id: str
    return_value: Any
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Invoker:
    """Runs functions: async ones on the event loop, sync ones in a worker thread.

    With `output_bindings`, what a function set on its output bindings is delivered after it
    returns and before the invocation counts as succeeded, as the Functions host does.
    """

    function_directory: str
    output_bindings: OutputBindings | None = None

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        *,
        reason: str,
        trace_parent: str | None = None,
        trace_state: str | None = None,
        retry_context: DevRetryContext | None = None,
        details: str | None = None,
    ) -> InvocationResult:
        """Invoke once; on failure log the traceback and raise InvocationFailed.

        `details` is logged after the Executing line (the host's "Trigger Details: ...").
        """
        context = InvocationContext(
            function_name=spec.name,
            function_directory=self.function_directory,
            trace_context=DevTraceContext(trace_parent, trace_state),
            retry_context=retry_context,
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
        if details:
            logger.info("Trigger Details: %s", details)
        started = time.perf_counter()
        try:
            if isinstance(trigger_value, DeferredValue):
                built = trigger_value.build()
                if spec.trigger.name in kwargs:
                    kwargs[spec.trigger.name] = built
            if spec.is_async:
                value = await spec.user_function(**kwargs)
            else:
                value = await asyncio.to_thread(spec.user_function, **kwargs)
            output_values = {name: out.get() for name, out in outputs.items()}
            if self.output_bindings is not None:
                await self.output_bindings.deliver(spec, value, output_values)
        except OutputBindingError as exc:
            # The user code succeeded: the SDK's traceback would only bury the reason.
            logger.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %s",
                spec.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
                exc,
            )
            raise InvocationFailed(spec.name, invocation_id, error=exc) from None
        except Exception as exc:
            logger.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )
            raise InvocationFailed(spec.name, invocation_id, error=exc) from None
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            spec.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        result = InvocationResult(
            invocation_id=invocation_id, return_value=value, outputs=output_values
        )
        if self.output_bindings is None:
            _log_outputs(spec, result)
        return result


def _log_outputs(spec: FunctionSpec, result: InvocationResult) -> None:
    for binding in spec.bindings:
        if binding.type != "http" and result.outputs.get(binding.name) is not None:
            logger.info(
                "output binding set; the dev host does not deliver it",
                extra={"function": spec.name, "binding": binding.name, "type": binding.type},
            )
