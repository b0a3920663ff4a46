"""The checkpointer: LangGraph's ``AsyncPostgresSaver``, tuned for a pool and for sessions.

Four changes, all measured (``bench/RESULTS.md``):

- **One commit per checkpoint, or none of its own.** A checkpoint and its blobs are written
  in one transaction (the saver pipelines them as separate autocommit statements). Inside
  :func:`deferring_writes` the writes are not sent at all but recorded, and the turn runner
  replays them in the transaction that ends the turn (:func:`replay_writes`): the checkpoint
  becomes durable in the same commit that frees the lease and moves the session's committed
  checkpoint, and a turn that lost its lease writes nothing.
- **No thread hop for a write that is only recorded.** The saver serializes a checkpoint's
  values and a step's writes in a worker thread (``asyncio.to_thread``) before sending them;
  when they are only recorded (deferred) they are serialized in place: about a tenth of a
  turn's CPU went to handing the work to the thread and back.
- **No process-wide lock.** ``AsyncPostgresSaver`` runs every query under one
  ``asyncio.Lock`` (langgraph issue 7259), because a single connection cannot run two
  pipelines at once. Given a pool, each query here takes a connection of its own, so the
  lock only serialised unrelated sessions.
- **The latest checkpoint of recently used sessions, kept in memory.** Loading a checkpoint
  deserialises every message of the session, so a turn's cost grew with its history. A
  turn's lease knows the session's committed checkpoint id; when the cache holds that very
  checkpoint (this process wrote or read it last), the load is skipped. Checkpoint ids are
  never reused and a checkpoint's content never changes, so a hit is exact, whichever
  replica served the turns in between: another replica's turn moves the committed id and
  misses the cache. Callers opt in per call with :data:`EXPECTED_CHECKPOINT` in
  ``configurable``; without it (``langgraph dev``, history, Studio) every read goes to
  Postgres. The cache is bounded by the number of messages it holds.

Fenced writes, for safety rather than speed: inside :func:`fenced_writes` (a turn with
per-step durability, a state update), each write's transaction first runs the caller's fence
statement (the session's lease still held by the writer's token, the row locked until the
commit), so a writer that lost its lease (paused past its liveness bound while another
replica took the session) writes nothing. The fence also bounds its transaction on the
server, which ends it when the writer leaves it idle too long (a process paused inside it),
so a write's transaction holds nothing but database work: a checkpoint is serialized before
it opens. A fenced write that fails for any reason asks the fence again, on a fresh
connection, and raises the fence's error when the lease has gone meanwhile.

Reads (:meth:`SessionSaver.aget_tuple`, :meth:`SessionSaver.alist`) run once more on a fresh
connection when theirs fails under them (:func:`runtime.reconnect.read_again`); writes never.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import ormsgpack
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    copy_checkpoint,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde import jsonplus
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from runtime.memo import PerObject, message_version
from runtime.reconnect import read_again

__all__ = [
    "EXPECTED_CHECKPOINT",
    "MessageCachingSerializer",
    "SessionSaver",
    "Write",
    "deferring_writes",
    "fenced_writes",
    "replay_writes",
]

# ``configurable`` key: the checkpoint id the caller knows to be the thread's latest.
EXPECTED_CHECKPOINT = "sessiongraph_expected_checkpoint"


# A statement the saver would have run: ("execute" | "executemany", query, params).
Write = tuple[str, Any, Any]

_deferred: ContextVar[list[Write] | None] = ContextVar("sessiongraph_deferred", default=None)
# The checkpoints written while deferring, by thread: the turn reads them back from here.
_unwritten: ContextVar[dict[str, CheckpointTuple] | None] = ContextVar(
    "sessiongraph_unwritten", default=None
)


# A fence: (statement, parameters, the error to raise when it returns no row).
Fence = tuple[str, Any, Callable[[], BaseException]]
_fence: ContextVar[Fence | None] = ContextVar("sessiongraph_fence", default=None)


@contextmanager
def fenced_writes(statement: str, params: Any, lost: Callable[[], BaseException]) -> Iterator[None]:
    """Within the block (and tasks it starts), each write the saver sends runs ``statement``
    first in its transaction and, when it returns no row, raises ``lost()`` instead of
    writing. The statement should lock what it checks until the commit. A write that fails
    otherwise runs ``statement`` once more, on a fresh connection: if it returns no row then
    (the lease went while the write was failing), ``lost()`` is raised from the failure."""
    token = _fence.set((statement, params, lost))
    try:
        yield
    finally:
        _fence.reset(token)


@contextmanager
def deferring_writes() -> Iterator[list[Write]]:
    """Within the block (and tasks it starts), the saver records its writes instead of
    running them; the list it yields holds them, in order, for :func:`replay_writes`."""
    sink: list[Write] = []
    token = _deferred.set(sink)
    unwritten = _unwritten.set({})
    try:
        yield sink
    finally:
        _unwritten.reset(unwritten)
        _deferred.reset(token)


async def replay_writes(conn: AsyncConnection[Any], writes: Sequence[Write]) -> None:
    """Run recorded saver writes on ``conn`` (in the caller's transaction)."""
    if not writes:
        return
    async with conn.cursor(binary=True) as cur:
        await _run(cur, writes)


async def _run(cur: AsyncCursor[Any], writes: Sequence[Write]) -> None:
    for kind, query, params in writes:
        if kind == "executemany":
            await cur.executemany(query, params)
        else:
            await cur.execute(query, params)


async def _fence_holds(conn: AsyncConnection[Any], fence: Fence) -> bool:
    """Run the fence's statement on ``conn`` (in its transaction): whether it returns a row."""
    statement, params, _ = fence
    cur = await conn.execute(statement, params)
    return await cur.fetchone() is not None


def _checkpoint_keys(configurable: dict[str, Any]) -> dict[str, Any]:
    """The keys that locate a checkpoint (thread, namespace, id, map)."""
    return {
        k: v for k, v in configurable.items() if k == "thread_id" or k.startswith("checkpoint_")
    }


class _Recorder:
    """Stands in for a cursor while writes are deferred."""

    def __init__(self, sink: list[Write]) -> None:
        self._sink = sink

    async def execute(self, query: Any, params: Any = None, **_: Any) -> None:
        self._sink.append(("execute", query, params))

    async def executemany(self, query: Any, params_seq: Any, **_: Any) -> None:
        self._sink.append(("executemany", query, list(params_seq)))


class SessionSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` on a pool, without its lock, with a latest-checkpoint cache."""

    conn: AsyncConnectionPool[Any]

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        serde: SerializerProtocol | None = None,
        cache_messages: int = 3_000,
    ) -> None:
        super().__init__(pool, serde=serde)
        self.cache_messages = cache_messages
        self._cache: OrderedDict[str, tuple[CheckpointTuple, int]] = OrderedDict()
        self._cached_messages = 0
        self.hits = 0
        self.misses = 0

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        # The saver writes through pipelined cursors and reads through plain ones.
        sink = _deferred.get() if pipeline else None
        if sink is not None:
            yield _Recorder(sink)  # type: ignore[misc]
            return
        if not pipeline:
            async with (
                self.conn.connection() as conn,
                conn.cursor(binary=True, row_factory=dict_row) as cur,
            ):
                yield cur
            return
        fence = _fence.get()
        refused: BaseException | None = None
        try:
            # One transaction: a checkpoint and its blobs commit together, with one WAL
            # flush instead of one per statement; behind the fence, if there is one.
            async with self.conn.connection() as conn, conn.transaction():
                if fence is not None and not await _fence_holds(conn, fence):
                    refused = fence[2]()
                    raise refused
                async with (
                    conn.pipeline() if self.supports_pipeline else nullcontext(),
                    conn.cursor(binary=True, row_factory=dict_row) as cur,
                ):
                    yield cur
        except Exception as exc:
            # A fenced write that failed (its server may have ended it: its process was
            # paused inside it) is refused as the fence refuses when the lease has gone.
            if fence is None or exc is refused or await self._fence_holds_now(fence):
                raise
            raise fence[2]() from exc

    async def _fence_holds_now(self, fence: Fence) -> bool:
        """Whether the fence holds, asked on a fresh connection; True when it cannot be
        asked (the database is away: the write's own error says so)."""
        try:
            async with self.conn.connection() as conn:
                return await _fence_holds(conn, fence)
        except Exception:
            return True

    # -- the cache ----------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config.get("configurable") or {}
        expected = configurable.get(EXPECTED_CHECKPOINT)
        cacheable = configurable.get("checkpoint_ns", "") == "" and not configurable.get(
            "checkpoint_id"
        )
        if expected and cacheable:
            thread_id = str(configurable["thread_id"])
            pending = (_unwritten.get() or {}).get(thread_id)
            if pending is not None and pending.checkpoint["id"] == expected:
                return _fresh(pending)
            entry = self._cache.get(thread_id)
            if entry is not None and entry[0].checkpoint["id"] == expected:
                self._cache.move_to_end(thread_id)
                self.hits += 1
                return _fresh(entry[0])
            self.misses += 1
            found = await self._load(config)
            if (
                found is not None
                and found.checkpoint["id"] == expected
                and not found.pending_writes
            ):
                self._remember(thread_id, found)
            return found
        return await self._load(config)

    async def _load(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await read_again(lambda: AsyncPostgresSaver.aget_tuple(self, config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # The rows are all fetched before the first is yielded: a failed connection shows
        # there, and only there is the read run again.
        async def first() -> tuple[CheckpointTuple | None, AsyncIterator[CheckpointTuple]]:
            listing = AsyncPostgresSaver.alist(
                self, config, filter=filter, before=before, limit=limit
            )
            try:
                return await anext(listing), listing
            except StopAsyncIteration:
                return None, listing

        found, rest = await read_again(first)
        if found is None:
            return
        yield found
        async for item in rest:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        # LangGraph copies every scalar configurable key into each checkpoint's metadata; a
        # run's configurable holds the agent's configuration (its system prompt…), which
        # belongs to the agent, not to every checkpoint: only the checkpoint's own keys stay.
        config = {**config, "configurable": _checkpoint_keys(config["configurable"])}
        sink = _deferred.get()
        if sink is None:
            # Serialized first (in a worker thread, as LangGraph does), then sent: the
            # write's transaction has nothing to wait for but the database.
            statements: list[Write] = []
            saved = await asyncio.to_thread(
                self._record_put, statements, config, checkpoint, metadata, new_versions
            )
            async with self._cursor(pipeline=True) as cur:
                await _run(cur, statements)
        else:
            saved = self._record_put(sink, config, checkpoint, metadata, new_versions)
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        if configurable.get("checkpoint_ns", "") == "":
            parent = configurable.get("checkpoint_id")
            self._remember(
                thread_id,
                CheckpointTuple(
                    saved,
                    copy_checkpoint(checkpoint),
                    get_serializable_checkpoint_metadata(config, metadata),
                    (
                        {
                            "configurable": {
                                "thread_id": thread_id,
                                "checkpoint_ns": "",
                                "checkpoint_id": parent,
                            }
                        }
                        if parent
                        else None
                    ),
                    [],
                ),
            )
        return saved

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        # Pending writes (an interrupted step's) belong to the tuple: read it back whole.
        self.forget(str(config["configurable"]["thread_id"]))
        sink = _deferred.get()
        if sink is None:
            await super().aput_writes(config, writes, task_id, task_path)
            return
        where = config["configurable"]
        rows = self._dump_writes(
            where["thread_id"], where["checkpoint_ns"], where["checkpoint_id"], task_id,
            task_path, writes,
        )  # fmt: skip
        # Writes to the special channels replace earlier ones; others are only inserted.
        special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        query = self.UPSERT_CHECKPOINT_WRITES_SQL if special else self.INSERT_CHECKPOINT_WRITES_SQL
        sink.append(("executemany", query, rows))

    def _record_put(
        self,
        sink: list[Write],
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Record the statements ``aput`` would send (the changed channels' blobs, then the
        checkpoint row), serializing here; return the new checkpoint's config."""
        where = config["configurable"]
        thread_id, ns = where["thread_id"], where["checkpoint_ns"]
        inline, blobs = _split_channel_values(checkpoint["channel_values"])
        changed = {k: v for k, v in new_versions.items() if k in blobs}
        if changed:
            rows = self._dump_blobs(thread_id, ns, blobs, changed)
            sink.append(("executemany", self.UPSERT_CHECKPOINT_BLOBS_SQL, rows))
        row = (
            thread_id,
            ns,
            checkpoint["id"],
            where.get("checkpoint_id"),
            Jsonb({**checkpoint, "channel_values": inline}),
            Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
        )
        sink.append(("execute", self.UPSERT_CHECKPOINTS_SQL, row))
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def forget(self, thread_id: str) -> None:
        """Drop the thread's cached checkpoint."""
        entry = self._cache.pop(thread_id, None)
        if entry is not None:
            self._cached_messages -= entry[1]

    def _remember(self, thread_id: str, found: CheckpointTuple) -> None:
        self.forget(thread_id)
        unwritten = _unwritten.get()
        if unwritten is not None:
            # Deferred, so not in Postgres yet: the rest of its turn reads it from here.
            unwritten[thread_id] = found
        if self.cache_messages <= 0:
            return
        size = 1 + len(found.checkpoint["channel_values"].get("messages") or ())
        self._cache[thread_id] = (found, size)
        self._cached_messages += size
        while self._cached_messages > self.cache_messages and self._cache:
            _, (_, evicted) = self._cache.popitem(last=False)
            self._cached_messages -= evicted


def _split_channel_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkpoint's channel values as the Postgres saver stores them: primitives inline in
    the checkpoint row, anything else as a blob; a delta snapshot is a blob whose inline
    value is ``True`` (the saver's marker for it)."""
    inline: dict[str, Any] = {}
    blobs: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, _DeltaSnapshot):
            blobs[key] = value
            inline[key] = True
        elif value is None or isinstance(value, (str, int, float, bool)):
            inline[key] = value
        else:
            blobs[key] = value
    return inline, blobs


def _fresh(found: CheckpointTuple) -> CheckpointTuple:
    """A copy the graph loop may mutate (it updates versions in place) without harm."""
    return CheckpointTuple(
        found.config,
        copy_checkpoint(found.checkpoint),
        dict(found.metadata),  # type: ignore[arg-type]
        found.parent_config,
        [],
    )


class MessageCachingSerializer(JsonPlusSerializer):
    """``JsonPlusSerializer`` that encodes each message object once.

    A checkpoint stores a session's whole message list, so encoding it cost time in
    proportion to the history on every turn although only the turn's new messages had
    changed. Messages settled in the state are not modified (updates replace them with
    copies), so the encoding of a message object is kept for as long as the object lives
    and its :func:`~runtime.memo.message_version` holds (:class:`~runtime.memo.PerObject`).
    The bytes are exactly what the plain serializer writes.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoded = PerObject(jsonplus._msgpack_default, message_version)

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None or isinstance(obj, (bytes, bytearray)):
            return super().dumps_typed(obj)
        return "msgpack", ormsgpack.packb(obj, default=self._default, option=jsonplus._option)

    def _default(self, obj: Any) -> Any:
        if not isinstance(obj, BaseMessage):
            return jsonplus._msgpack_default(obj)
        return self._encoded(obj)
