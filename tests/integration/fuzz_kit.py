"""What the fuzz tests do with a drawn request or event: call the real service with a
deadline and judge the answer, check that the service is still alive and SERVING,
publish on NATS and wait until the indexer has settled every message; and a short,
readable description of any request for the failure report."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import nats
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js.errors import NotFoundError

from semantic.v1 import embedder_pb2, search_pb2

T = TypeVar("T")
# A generous deadline: a call still running after it is a hang, not a slow answer.
DEADLINE_S = 60.0
# Never a client's fault: a bug (INTERNAL, UNKNOWN) or a hang (DEADLINE_EXCEEDED).
FORBIDDEN = (
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]
_MODULES = {"Embedder": embedder_pb2, "Search": search_pb2, "Admin": search_pb2}


# --- describing requests ------------------------------------------------------------------


def describe(value: Any, limit: int = 4000) -> str:
    """A one-line description: long strings and lists shortened, sizes kept."""
    text = _describe(value)
    return text if len(text) <= limit else f"{text[:limit]} ...[{len(text)} chars]"


def _describe(value: Any, depth: int = 0) -> str:
    if depth > 12:
        return "..."  # deeper nesting is elided
    if isinstance(value, Message):
        parts = [f"{fd.name}={_field(fd, v, depth)}" for fd, v in value.ListFields()]
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, str):
        return _short_str(value)
    if isinstance(value, bytes):
        return repr(value) if len(value) <= 200 else f"{value[:200]!r}...[{len(value)} bytes]"
    if isinstance(value, list | tuple):
        return _seq(value, depth)
    return repr(value)


def _field(fd: FieldDescriptor, value: Any, depth: int) -> str:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        entries = [f"{_describe(k)}: {_describe(value[k], depth + 1)}" for k in value]
        return "{" + ", ".join(entries) + "}"
    if fd.is_repeated:
        return _seq(list(value), depth)
    if fd.enum_type is not None:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known else f"{value} (unknown)"
    return _describe(value, depth + 1)


def _seq(items: Sequence[Any], depth: int) -> str:
    shown = ", ".join(_describe(i, depth + 1) for i in items[:4])
    if len(items) > 4:
        distinct = len({_describe(i, depth + 1) for i in items[:1000]})
        shown += f", ...[{len(items)} items, {distinct} distinct in the first 1000]"
    return f"[{shown}]"


def _short_str(value: str) -> str:
    if len(value) <= 120:
        return repr(value)
    return f"{value[:40]!r}...[{len(value)} chars, {len(set(value))} distinct]"


LOG_ENV = "SEMANTIC_FUZZ_LOG"


def log_answer(line: str) -> None:
    """Append ``line`` to the file named by SEMANTIC_FUZZ_LOG, if set (what a campaign
    did: one line per call or event, for counting outcomes)."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line.replace("\n", " ") + "\n")


class Shown:
    """A drawn value whose repr (in Hypothesis' falsifying example) is :func:`describe`."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return describe(self.value)


# --- calling a service ------------------------------------------------------------------


@dataclass
class Target:
    """A service process under fuzz: its channel, its health, whether it still lives."""

    name: str
    address: str
    alive: Callable[[], bool]
    services: Sequence[str]
    channel: grpc.Channel = field(init=False)
    broken: str | None = None

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def close(self) -> None:
        self.channel.close()

    def call(
        self,
        method: MethodDescriptor,
        request: Any,
        *,
        raw: bool = False,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> tuple[grpc.StatusCode, str]:
        """Call ``method`` with ``request`` (a message, bytes if ``raw``, or a list of
        them for a client stream); (status code, details). Streams are read to the end."""
        path = f"/{method.containing_service.full_name}/{method.name}"
        output = getattr(_MODULES[method.containing_service.name], method.output_type.name)
        serialize = (lambda b: b) if raw else (lambda m: m.SerializeToString())
        try:
            if method.client_streaming:
                stream = self.channel.stream_stream(
                    path, request_serializer=serialize, response_deserializer=output.FromString
                )
                for _ in stream(iter(request), timeout=DEADLINE_S, metadata=metadata):
                    pass
            else:
                unary = self.channel.unary_unary(
                    path, request_serializer=serialize, response_deserializer=output.FromString
                )
                unary(request, timeout=DEADLINE_S, metadata=metadata)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, ""

    def invoke(self, method: MethodDescriptor, request: Message) -> Message:
        """A unary call's response (an RpcError propagates)."""
        path = f"/{method.containing_service.full_name}/{method.name}"
        output = getattr(_MODULES[method.containing_service.name], method.output_type.name)
        unary = self.channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=output.FromString,
        )
        response: Message = unary(request, timeout=DEADLINE_S)
        return response

    def check_answer(
        self, method: MethodDescriptor, request: Any, *, raw: bool = False
    ) -> grpc.StatusCode:
        """Call, then fail on INTERNAL, UNKNOWN or a hang, or when the service is no longer
        alive and SERVING; a client status (INVALID_ARGUMENT, NOT_FOUND ...) passes."""
        self.require_healthy()
        code, details = self.call(method, request, raw=raw)
        path = f"{method.containing_service.name}/{method.name}"
        log_answer(f"{self.name} {path} {code.name} {details[:200]!r} {describe(request, 300)}")
        assert code not in FORBIDDEN, (
            f"{self.name} {path} answered {code.name}: {details!r}\nrequest: {describe(request)}"
        )
        self.assert_serving(f"after {path} answered {code.name} to {describe(request)}")
        return code

    def require_healthy(self) -> None:
        """Fail at once when an earlier example already broke the service."""
        assert self.broken is None, f"{self.name} is broken since: {self.broken}"

    def assert_serving(self, context: str) -> None:
        """The process lives and every one of its services reports SERVING."""
        problem = self._health_problem()
        if problem is not None:
            self.broken = f"{problem} {context}"
            raise AssertionError(f"{self.name}: {self.broken}")

    def _health_problem(self) -> str | None:
        if not self.alive():
            return "the process exited"
        health = health_pb2_grpc.HealthStub(self.channel)
        for service in ("", *self.services):
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            except grpc.RpcError as error:
                return f"health check of {service!r} failed: {error.code().name}"
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                return f"{service!r} is {status}"
        return None


# --- events on NATS ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerState:
    name: str
    pending: int
    ack_pending: int
    redelivered: int
    delivered_seq: int
    ack_floor_seq: int

    @property
    def settled(self) -> bool:
        """Everything delivered, and every delivered message acked or terminated."""
        return (
            self.pending == 0 and self.ack_pending == 0 and self.ack_floor_seq >= self.delivered_seq
        )


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    subject: str
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("Semantic-Dlq-Reason", "")

    @property
    def detail(self) -> str:
        return self.headers.get("Semantic-Dlq-Detail", "")

    @property
    def msg_id(self) -> str:
        return self.headers.get("Nats-Msg-Id", "").removeprefix("dlq:")


class EventBus:
    """A NATS connection on its own event-loop thread, for synchronous Hypothesis tests."""

    def __init__(self, url: str, stream: str, dlq_stream: str, consumers: Sequence[str]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stream, self._dlq, self._consumers = stream, dlq_stream, tuple(consumers)
        self._nc = self.run(nats.connect(url))
        self._js = self._nc.jetstream()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        self.run(self._nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> int:
        """Publish on JetStream; the stream sequence of the message."""
        ack = self.run(self._js.publish(subject, payload, headers=headers or None))
        return int(ack.seq)

    def consumers(self) -> list[ConsumerState]:
        async def read() -> list[ConsumerState]:
            states = []
            for name in self._consumers:
                info = await self._js.consumer_info(self._stream, name)
                states.append(
                    ConsumerState(
                        name,
                        info.num_pending or 0,
                        info.num_ack_pending or 0,
                        info.num_redelivered or 0,
                        info.delivered.stream_seq if info.delivered else 0,
                        info.ack_floor.stream_seq if info.ack_floor else 0,
                    )
                )
            return states

        return self.run(read())

    def wait_settled(self, timeout_s: float) -> list[ConsumerState] | None:
        """Wait until every consumer has settled its messages; None when they have, the
        last states seen when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.consumers()
            if all(s.settled for s in states):
                return None
            if time.monotonic() > deadline:
                return states
            time.sleep(0.05)

    def dead_letters(self, after_seq: int = 0) -> list[DeadLetter]:
        """The dead letters stored after stream sequence ``after_seq``."""

        async def read() -> list[DeadLetter]:
            try:
                info = await self._js.stream_info(self._dlq)
            except NotFoundError:
                return []
            letters = []
            for seq in range(max(after_seq + 1, info.state.first_seq), info.state.last_seq + 1):
                msg = await self._js.get_msg(self._dlq, seq)
                # str(): nats-py parses non-ASCII header values into email.header.Header.
                headers = {k: str(v) for k, v in (msg.headers or {}).items()}
                letters.append(DeadLetter(seq, msg.subject, headers))
            return letters

        return self.run(read())

    def last_dead_letter_seq(self) -> int:
        async def read() -> int:
            try:
                return int((await self._js.stream_info(self._dlq)).state.last_seq)
            except NotFoundError:
                return 0

        return self.run(read())
