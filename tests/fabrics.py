"""Fabrics built for tests from the mini fixture, shared by the routing and gateway tests."""

from __future__ import annotations

from isthmus.fabric.catalog import Fabric


def with_short_context_model(mini: Fabric) -> Fabric:
    """``chat-small`` also serves a faster model with a 4,096-token context window, at Paris
    (where llama-3.1-8b's window is 8,192): the one Isthmus prefers when a prompt fits it."""
    llama = mini.models["llama-3.1-8b"]
    profile = llama.profiles[0].model_copy(update={"prefill_tokens_per_s": 24_000})
    short = llama.model_copy(
        update={"name": "llama-short", "context_tokens": 4096, "profiles": (profile,)}
    )
    par = next(e for e in mini.spec.endpoints if e.name == "par-llama")
    endpoint = par.model_copy(
        update={"name": "par-short", "model": "llama-short", "url": "http://127.0.0.1:18004/v1"}
    )
    spec = mini.spec.model_copy(
        update={
            "models": (*mini.spec.models, short),
            "endpoints": (*mini.spec.endpoints, endpoint),
            "aliases": {**mini.spec.aliases, "chat-small": ("llama-short", "llama-3.1-8b")},
        }
    )
    return Fabric(spec, mini.sources)
