"""Inference engines: the shared timing model, the tokenizer, and the emulator.

``tokens`` and ``timing`` are pure and imported by the gateway and the simulator;
``emulator`` (uvicorn, orjson) is imported only by whoever serves emulated endpoints.
"""

from __future__ import annotations

from isthmus.engines.timing import (
    DEFAULT_PROFILE,
    Done,
    EngineCore,
    EngineLoad,
    EngineProfile,
    EngineRequest,
    Event,
    FirstToken,
    Preempted,
    RequestTooLarge,
    Step,
    Token,
    Usage,
)
from isthmus.engines.tokens import (
    approx_tokens,
    block_hashes,
    chat_prompt_tokens,
    count_tokens,
    prompt_from_hash_ids,
    synthetic_block_text,
)
from isthmus.engines.virtual import TimedEvent, run_virtual

__all__ = [
    "DEFAULT_PROFILE",
    "Done",
    "EngineCore",
    "EngineLoad",
    "EngineProfile",
    "EngineRequest",
    "Event",
    "FirstToken",
    "Preempted",
    "RequestTooLarge",
    "Step",
    "TimedEvent",
    "Token",
    "Usage",
    "approx_tokens",
    "block_hashes",
    "chat_prompt_tokens",
    "count_tokens",
    "prompt_from_hash_ids",
    "run_virtual",
    "synthetic_block_text",
]
