"""The serving path's CPU as a single-server queue, alone and inside a replay."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.sim.events import EventLoop
from isthmus.sim.replay import Replay, TraceRequest
from isthmus.sim.serving import CpuQueue, ServingCpu

OPTIONS = {"gateway_site": "onprem-paris", "model": "llama-3.1-8b", "data_class": "public"}


def test_visits_arriving_together_are_served_one_after_another() -> None:
    loop = EventLoop()
    queue = CpuQueue(loop)
    done: list[tuple[float, str]] = []
    for name in "abc":
        loop.at(1.0, queue.serve, 0.5, lambda n=name: done.append((loop.now, n)))
    loop.run()
    assert done == [(1.5, "a"), (2.0, "b"), (2.5, "c")]
    assert queue.waited_s == pytest.approx(0.5 + 1.0)
    assert queue.busy_s == pytest.approx(1.5) and queue.visits == 3


def test_an_idle_server_starts_at_once_and_a_busy_one_when_it_is_free() -> None:
    loop = EventLoop()
    queue = CpuQueue(loop)
    done: list[float] = []
    loop.at(0.0, queue.serve, 1.0, lambda: done.append(loop.now))
    loop.at(0.4, queue.serve, 1.0, lambda: done.append(loop.now))  # waits 0.6 s
    loop.at(5.0, queue.serve, 1.0, lambda: done.append(loop.now))  # idle again by then
    loop.run()
    assert done == pytest.approx([1.0, 2.0, 6.0])
    assert queue.waited_s == pytest.approx(0.6)


def test_serving_cpu_splits_the_work_between_gateway_and_engine() -> None:
    cpu = ServingCpu.split(0.006, 1.5e-6, gateway_share=0.25)
    assert cpu.gateway_service_s(1000) == pytest.approx(0.25 * 0.0075)
    assert cpu.engine_service_s(1000) == pytest.approx(0.75 * 0.0075)
    with pytest.raises(ValueError, match="gateway_share"):
        ServingCpu.split(0.006, 1.5e-6, gateway_share=1.5)
    with pytest.raises(ValueError, match="engine_s"):
        ServingCpu(engine_s=-1.0)


def _burst(n: int) -> list[TraceRequest]:
    return [
        TraceRequest(arrival_s=1.0, prompt_tokens=1024, output_tokens=2, hash_ids=(k, 1000 + k))
        for k in range(n)
    ]


def test_a_lone_request_pays_the_serving_cpu_as_a_delay(mini: Fabric) -> None:
    cpu = ServingCpu(gateway_s=0.004, engine_s=0.006)
    (queued,) = Replay(mini, serving_cpu=cpu, **OPTIONS).run(_burst(1))  # type: ignore[arg-type]
    (delayed,) = Replay(mini, request_overhead_s=0.010, **OPTIONS).run(_burst(1))  # type: ignore[arg-type]
    assert queued.ttft_s == pytest.approx(delayed.ttft_s)


def test_requests_arriving_together_wait_for_the_serving_cpu(mini: Fabric) -> None:
    cpu = ServingCpu(gateway_s=0.004, engine_s=0.006)
    replay = Replay(mini, serving_cpu=cpu, **OPTIONS)  # type: ignore[arg-type]
    queued = replay.run(_burst(8))
    delayed = Replay(mini, request_overhead_s=0.010, **OPTIONS).run(_burst(8))  # type: ignore[arg-type]
    assert all(r.status == "ok" for r in queued)
    queue = replay.serving_queue
    assert queue is not None and queue.visits == 16
    assert queue.busy_s == pytest.approx(8 * 0.010)
    # the gateway alone makes the k-th request of the burst wait k gateway services
    assert queue.waited_s >= 0.004 * sum(range(8))
    # the first is routed at once; the work of the others delays theirs
    ttfts = sorted(r.ttft_s for r in queued if r.ttft_s is not None)
    assert sum(ttfts) > sum(r.ttft_s for r in delayed if r.ttft_s is not None) + 0.004 * 28


def test_without_a_serving_cpu_there_is_no_queue(mini: Fabric) -> None:
    replay = Replay(mini, **OPTIONS)  # type: ignore[arg-type]
    ideal = replay.run(_burst(4))
    free = Replay(mini, serving_cpu=ServingCpu(), **OPTIONS).run(_burst(4))  # type: ignore[arg-type]
    assert replay.serving_queue is None
    assert [r.ttft_s for r in free] == pytest.approx([r.ttft_s for r in ideal])
