"""The replay routes as the gateway does around what engines refuse: prompts beyond a model's
context window, and attempts that failed before their first token (nothing cached)."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.routing import ROUTERS
from isthmus.sim.replay import Outage, Replay, TraceRequest, chained_block_hashes


@pytest.mark.parametrize("policy", sorted(ROUTERS))
def test_a_prompt_beyond_the_context_window_is_not_run(mini: Fabric, policy: str) -> None:
    replay = Replay(
        mini, policy=policy, gateway_site="onprem-paris", model="llama-3.1-8b"
    )  # llama-3.1-8b: 8,192 tokens of context
    fits, beyond = replay.run(
        [
            TraceRequest(arrival_s=0.0, prompt_tokens=8192 - 16, output_tokens=16),
            TraceRequest(arrival_s=1.0, prompt_tokens=8192, output_tokens=16),
        ]
    )
    assert fits.status == "ok"
    assert beyond.status == "unavailable" and "context window" in beyond.reason


def test_an_attempt_that_failed_to_connect_leaves_nothing_cached(mini: Fabric) -> None:
    """Paris is down and the gateway does not know yet: the request fails over after a connect
    error, and Paris must not be believed to hold its prompt."""
    replay = Replay(
        mini,
        gateway_site="onprem-paris",
        model="llama-3.1-8b",
        outages=(Outage(start_s=0.0, site="onprem-paris"),),
        detection_delay_s=30.0,
    )
    request = TraceRequest(arrival_s=0.5, prompt_tokens=2048, output_tokens=4, hash_ids=(5, 6))
    fleet = replay.view.fleet
    hashes = chained_block_hashes(request.hash_ids, 2048, replay.index_block_tokens)
    seen = []  # what the index believes once the request is done, before the outage is detected
    replay.loop.at(5.0, lambda: seen.append(fleet.prefix.match(hashes)))
    (result,) = replay.run([request])
    assert result.status == "ok" and result.attempts == 2 and result.site != "onprem-paris"
    (held,) = seen
    assert held is not None
    assert held[fleet.position["par-llama"]] == 0
    assert held[fleet.position[result.endpoint]] == len(hashes)
