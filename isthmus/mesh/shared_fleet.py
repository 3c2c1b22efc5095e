"""Endpoint load and the prefix index, shared by the gateway replicas of a site through Redis.

Each replica journals what its own requests do to the fleet (``FleetState.journal``): prefill
tokens dispatched to an endpoint, prefill work seen finished early (a first token, a failure),
prompt prefixes recorded in or corrected out of the prefix index. Every ``period_s`` a
background task sends those deltas, with the replica's own in-flight counts, as one message on
the site's Redis stream ``<namespace>:fleet:<site>``, and reads the other replicas' messages
in the same pipelined round trip, merging them into its ``FleetState``:

- **in flight**: each message carries the sender's own counts (absolute, so a lost message
  cannot make them drift); the fleet's count is this replica's plus every live peer's. A peer
  not heard of for ``expiry_s`` (it sends a heartbeat every ``heartbeat_s`` while it has
  requests in flight) is dropped with its load.
- **prefill queue**: token deltas join the fluid queue (``FleetState.add_remote_work``) as
  work queued behind what is there; deltas older than ``expiry_s`` (a replica catching up on
  the stream) are skipped, that work being done by then.
- **prefix index**: recorded chains and engine corrections are applied as if this replica had
  made them, so merging a peer's chain costs what recording it cost the peer: each replica
  keeps the whole site's index. A message is a JSON header, a newline, and the chains' 64-bit
  hashes packed little-endian (40% of the bytes of JSON integers, about half the parsing). A
  replica starting up replays the stream's history (the last ``stream_length`` messages) to
  warm its index.

``route()`` stays a pure function of the local arrays and costs the same: only the state it
reads is fresher. Endpoints travel by name, so replicas with different catalog versions only
share the endpoints they both know. If Redis is unreachable the replica routes on its own
state, logs once and counts the fallback; on return it sends its current counts and reads on
from where it was (the stream keeps a few minutes).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import orjson
import redis
import redis.asyncio

from isthmus.mesh.shared_metrics import SharedStateMetrics
from isthmus.routing.fleet import FleetState

__all__ = ["FleetSync"]

log = logging.getLogger("isthmus.mesh.shared_fleet")

MAX_UNSENT = 10_000
"""Prefix chains and corrections kept for the next message while Redis is unreachable."""


@dataclass
class _Peer:
    in_flight: dict[str, int] = field(default_factory=dict)
    seen_s: float = 0.0  # on this replica's clock


@dataclass
class _Outbox:
    dispatched: dict[int, float] = field(default_factory=dict)
    processed: dict[int, float] = field(default_factory=dict)
    recorded: dict[tuple[int, int], Sequence[int]] = field(default_factory=dict)
    observed: list[tuple[int, int, Sequence[int]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dispatched or self.processed or self.recorded or self.observed)


class FleetSync:
    """The ``FleetJournal`` of one replica's fleet, and the task that shares it."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        namespace: str,
        site: str,
        *,
        replica: str | None = None,
        period_s: float = 0.05,
        heartbeat_s: float = 1.0,
        expiry_s: float = 5.0,
        stream_length: int = 5_000,
        metrics: SharedStateMetrics | None = None,
    ) -> None:
        self.client = client
        self.stream = f"{namespace}:fleet:{site}"
        self.replica = replica or uuid.uuid4().hex[:12]
        self.period_s = period_s
        self.heartbeat_s = heartbeat_s
        self.expiry_s = expiry_s
        self.stream_length = stream_length
        self.metrics = metrics or SharedStateMetrics()
        self.on_reachable: Callable[[], None] | None = None
        self._fleet: FleetState | None = None
        self._outbox = _Outbox()
        self._peers: dict[str, _Peer] = {}
        self._applied: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._sent_in_flight: dict[str, int] = {}
        self._sent_at = -1e18
        self._last_id = "0"
        self._reachable = True

    @property
    def peers(self) -> tuple[str, ...]:
        """The other replicas heard of recently."""
        return tuple(self._peers)

    # -- FleetJournal ---------------------------------------------------------------------------
    def dispatched(self, i: int, uncached_tokens: int, hashes: Sequence[int]) -> None:
        out = self._outbox
        out.dispatched[i] = out.dispatched.get(i, 0.0) + uncached_tokens
        if hashes and len(out.recorded) < MAX_UNSENT:
            out.recorded[(i, hashes[-1])] = hashes

    def processed(self, i: int, tokens: float) -> None:
        out = self._outbox
        out.processed[i] = out.processed.get(i, 0.0) + tokens

    def observed(self, i: int, hashes: Sequence[int], cached_blocks: int) -> None:
        if len(self._outbox.observed) < MAX_UNSENT:
            self._outbox.observed.append((i, cached_blocks, hashes))

    # -- the sync round -------------------------------------------------------------------------
    def attach(self, fleet: FleetState) -> None:
        """Journal ``fleet``'s events from now on (a previous fleet's unsent deltas are lost)."""
        if self._fleet is fleet:
            return
        if self._fleet is not None and self._fleet.journal is self:
            self._fleet.journal = None
        fleet.journal = self
        self._fleet = fleet
        self._outbox = _Outbox()
        self._applied = np.zeros(len(fleet), dtype=np.int64)
        self._sent_in_flight = {}

    async def sync_once(self, fleet: FleetState, now_s: float) -> int:
        """Send this replica's deltas, merge the others'; returns the messages merged."""
        self.attach(fleet)
        message = self._message(fleet, now_s)
        pipe = self.client.pipeline(transaction=False)
        if message is not None:
            pipe.xadd(self.stream, {"d": message}, maxlen=self.stream_length, approximate=True)
            pipe.expire(self.stream, 86_400)
        pipe.time()
        pipe.xread({self.stream: self._last_id}, count=10_000)
        try:
            results = await pipe.execute()
        except redis.RedisError as error:
            self._unreachable(error, message)
            return 0
        if not self._reachable:
            self._reachable = True
            self.metrics.degraded.labels("fleet").set(0)
            log.warning("Redis reachable again: sharing fleet state with the site's gateways")
        if self.on_reachable is not None:
            self.on_reachable()
        if message is not None:
            self._outbox = _Outbox()
            self._sent_at = now_s
        seconds, micros = results[-2]
        server_ms = seconds * 1000 + micros // 1000
        merged = 0
        streams = results[-1] or ()
        for _, entries in streams.items() if isinstance(streams, dict) else streams:
            for entry_id, fields in entries:
                self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                sent_ms = int(self._last_id.split("-", 1)[0])
                age_s = max(0.0, (server_ms - sent_ms) / 1000.0)
                if self._merge(fleet, fields[b"d"], age_s, now_s):
                    merged += 1
        self._apply_in_flight(fleet, now_s)
        self.metrics.merged.inc(merged)
        return merged

    def _unreachable(self, error: Exception, message: bytes | None) -> None:
        if message is not None:  # keep the deltas for the next round, but not the heartbeat
            self._sent_in_flight = {}
        if self._reachable:
            self._reachable = False
            self.metrics.fallbacks.labels("fleet").inc()
            self.metrics.degraded.labels("fleet").set(1)
            log.warning(
                "Redis unreachable (%s): this gateway routes on its own view of the fleet "
                "until it is back",
                error,
            )

    def _message(self, fleet: FleetState, now_s: float) -> bytes | None:
        names = fleet.infos
        own = fleet.in_flight - self._applied
        in_flight = {names[i].name: int(own[i]) for i in np.flatnonzero(own > 0)}
        out = self._outbox
        changed = in_flight != self._sent_in_flight
        beat = bool(in_flight) and now_s - self._sent_at >= self.heartbeat_s
        if not (out or changed or beat):
            return None
        self._sent_in_flight = in_flight
        chains = array("Q")  # every chain's hashes, back to back; the header gives the lengths
        recorded: list[list[object]] = []
        observed: list[list[object]] = []
        for (i, _), hashes in out.recorded.items():
            if _pack(chains, hashes):
                recorded.append([names[i].name, len(hashes)])
        for i, blocks, hashes in out.observed:
            if _pack(chains, hashes):
                observed.append([names[i].name, blocks, len(hashes)])
        header = {
            "r": self.replica,
            "in": in_flight,
            "dt": {names[i].name: v for i, v in out.dispatched.items()},
            "pt": {names[i].name: v for i, v in out.processed.items()},
            "px": recorded,
            "ob": observed,
        }
        if sys.byteorder == "big":
            chains.byteswap()
        return orjson.dumps(header) + b"\n" + chains.tobytes()

    def _merge(self, fleet: FleetState, raw: bytes, age_s: float, now_s: float) -> bool:
        head, _, blob = raw.partition(b"\n")
        data = orjson.loads(head)
        replica = data["r"]
        if replica == self.replica:
            return False
        position = fleet.position
        if age_s <= self.expiry_s:
            peer = self._peers.setdefault(replica, _Peer())
            peer.in_flight = {k: int(v) for k, v in data["in"].items() if k in position}
            peer.seen_s = max(peer.seen_s, now_s - age_s)
            dispatched, processed = data["dt"], data["pt"]
            for name in dispatched.keys() | processed.keys():
                i = position.get(name)
                if i is not None:
                    fleet.add_remote_work(
                        i, float(dispatched.get(name, 0.0)), float(processed.get(name, 0.0)), now_s
                    )
        chains = np.frombuffer(blob, dtype="<u8").tolist()
        start = 0
        for name, length in data["px"]:
            i = position.get(name)
            if i is not None:
                fleet.prefix.record(i, chains[start : start + length])
            start += length
        for name, blocks, length in data["ob"]:
            i = position.get(name)
            if i is not None:
                fleet.prefix.observe(i, chains[start : start + length], int(blocks))
            start += length
        return True

    def _apply_in_flight(self, fleet: FleetState, now_s: float) -> None:
        """Set every endpoint's count to this replica's own plus the live peers'."""
        for replica in [r for r, p in self._peers.items() if now_s - p.seen_s > self.expiry_s]:
            del self._peers[replica]
        target = np.zeros(len(fleet), dtype=np.int64)
        for peer in self._peers.values():
            for name, count in peer.in_flight.items():
                target[fleet.position[name]] += count
        for i in np.flatnonzero(target != self._applied):
            own = max(0, int(fleet.in_flight[i] - self._applied[i]))
            fleet.set_load(int(i), in_flight=own + int(target[i]))
        self._applied = target

    async def close(self) -> None:
        if self._fleet is not None and self._fleet.journal is self:
            self._fleet.journal = None
        with contextlib.suppress(Exception):
            await self.client.aclose()


def _pack(chains: array[int], hashes: Sequence[int]) -> bool:
    """Append a chain of 64-bit unsigned block hashes (what the gateway computes); a chain of
    other integers (only a test would make one) is not shared."""
    size = len(chains)
    try:
        chains.extend(hashes)
    except (OverflowError, TypeError):
        del chains[size:]
        return False
    return True
