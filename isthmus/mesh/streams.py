"""Create (or update) the JetStream streams and status bucket named by ``isthmus.mesh.protocol``.

Both sides call ``ensure_streams`` on connect, so whichever starts first creates them and
neither depends on the other having run. Updating an existing stream with the same
configuration is a no-op on the server.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from isthmus.mesh.protocol import Names

__all__ = ["DUPLICATE_WINDOW_S", "ensure_streams"]

# how long the server remembers message ids to drop re-sent records; longer outages are
# de-duplicated by the control plane's (gateway, seq) key
DUPLICATE_WINDOW_S = 600.0
BUNDLES_KEPT = 10
AUDIT_KEPT_S = 30 * 24 * 3600.0
"""Audit records stay on the stream this long: far beyond any outage the control plane's ingest
must catch up after (gateways keep their own chains besides)."""


def _configs(names: Names) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=names.bundle_stream,
            subjects=[names.bundle_subject],
            max_msgs_per_subject=BUNDLES_KEPT,
            storage=StorageType.FILE,
        ),
        StreamConfig(
            name=names.audit_stream,
            subjects=[names.audit_subjects],
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=AUDIT_KEPT_S,  # ingested long before; bounds the server's disk
            storage=StorageType.FILE,
        ),
        StreamConfig(
            name=names.telemetry_stream,
            subjects=[names.telemetry_subjects],
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=7 * 24 * 3600.0,
            storage=StorageType.FILE,
        ),
    ]


async def ensure_streams(js: JetStreamContext, names: Names | None = None) -> KeyValue:
    """Make sure every stream exists with Isthmus's configuration; return the status bucket."""
    names = names or Names()
    for config in _configs(names):
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with another configuration: bring it to ours
            await js.update_stream(config)
    try:
        return await js.key_value(names.status_bucket)
    except Exception:
        return await js.create_key_value(
            KeyValueConfig(bucket=names.status_bucket, history=1, storage=StorageType.FILE)
        )
