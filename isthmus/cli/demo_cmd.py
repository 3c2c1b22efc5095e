"""``isthmus demo traffic``: replay a slice of the Mooncake trace against a running gateway.

Prompts are built from the trace's ``hash_ids`` (requests sharing ids share identical text
prefixes), arrival times follow the trace (sped up by ``--speedup``), and each request goes out
as one of the demo tenants — so sovereignty shapes where each lands. A live view shows decisions
by site, TTFT percentiles, prompt tokens served from cache, cost, and refusals by rule.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import aiohttp
import orjson
import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from isthmus.cli.fabric_cmds import FabricOption
from isthmus.cli.output import CliFailure, console, friendly, load
from isthmus.cli.up_cmd import demo_keys
from isthmus.engines.tokens import prompt_from_hash_ids
from isthmus.sim.traces import TraceError, load_mooncake

__all__ = ["demo_app"]

demo_app = typer.Typer(help="Demonstrations against a running `isthmus up`.", no_args_is_help=True)

TRACE = (
    Path(__file__).resolve().parents[2] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
)
# which model each tenant asks for in the demo (all are among its allowed models)
_MODELS = {
    "rheinbank": "chat-large",
    "lakeshore-health": "chat-small",
    "bund-digital": "mistral-small-3.1-24b",
    "meridian-retail": "chat-small",
}
_MIX = (
    "meridian-retail",
    "rheinbank",
    "meridian-retail",
    "lakeshore-health",
    "rheinbank",
    "bund-digital",
)


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    by_site: Counter[str] = field(default_factory=Counter)
    by_tenant_site: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ttft_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def view(self, url: str) -> Group:
        head = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self.started
        ttft = sorted(self.ttft_ms)

        def pct(q: float) -> str:
            return f"{ttft[min(len(ttft) - 1, int(q * len(ttft)))]:.0f} ms" if ttft else "—"

        hit = self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        head.add_row(
            f"[bold]{url}[/]",
            f"sent {self.sent}",
            f"ok {self.ok}",
            f"refused {sum(self.refused.values())}",
            f"errors {sum(self.errors.values())}",
            f"{self.ok / elapsed:.1f} req/s" if elapsed > 0 else "",
        )
        head.add_row(
            "TTFT",
            f"p50 {pct(0.5)}",
            f"p95 {pct(0.95)}",
            f"p99 {pct(0.99)}",
            f"cache hit {hit:.0%}",
            f"{self.cached_tokens:,}/{self.prompt_tokens:,} prompt tokens",
        )
        sites = Table(title="decisions by tenant and site", show_edge=False)
        sites.add_column("tenant")
        sites.add_column("site")
        sites.add_column("requests", justify="right")
        for (tenant, site), n in self.by_tenant_site.most_common(12):
            sites.add_row(tenant, site, str(n))
        parts: list[Table] = [head, sites]
        if self.refused:
            refusals = Table(
                title="refused for sovereignty (the rule that refused)", show_edge=False
            )
            refusals.add_column("reason")
            refusals.add_column("requests", justify="right")
            for reason, n in self.refused.most_common(6):
                refusals.add_row(escape(reason), str(n))
            parts.append(refusals)
        if self.errors:
            errors = Table(title="errors", show_edge=False)
            errors.add_column("error")
            errors.add_column("requests", justify="right")
            for reason, n in self.errors.most_common(5):
                errors.add_row(escape(reason), str(n))
            parts.append(errors)
        return Group(*parts)


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    tenant: str,
    model: str,
    prompt: str,
    max_tokens: int,
    tally: Tally,
) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tally.sent += 1
    start = time.monotonic()
    try:
        async with session.post(
            url + "/v1/chat/completions",
            data=orjson.dumps(body),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        ) as response:
            if response.status != 200:
                error = (await response.json(content_type=None)).get("error", {})
                message = str(error.get("message", response.status))
                if error.get("code") == "no_compliant_endpoint":
                    tally.refused[f"{tenant}: {message[:110]}"] += 1
                else:
                    tally.errors[f"{response.status} {error.get('code')}: {message[:80]}"] += 1
                return
            site = response.headers.get("x-isthmus-site", "?")
            first = True
            buffer = b""
            async for chunk in response.content.iter_any():
                if first:
                    tally.ttft_ms.append((time.monotonic() - start) * 1000.0)
                    first = False
                buffer = (buffer + chunk)[-8192:]
            for line in reversed(buffer.split(b"\n")):
                if line.startswith(b"data: {") and b'"usage"' in line:
                    usage = orjson.loads(line[6:]).get("usage") or {}
                    tally.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    details = usage.get("prompt_tokens_details") or {}
                    tally.cached_tokens += int(details.get("cached_tokens") or 0)
                    break
            tally.ok += 1
            tally.by_site[site] += 1
            tally.by_tenant_site[(tenant, site)] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.errors[type(exc).__name__] += 1


@demo_app.command("traffic")
@friendly
def traffic(
    url: Annotated[str, typer.Option(help="gateway URL")] = "http://127.0.0.1:8080",
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="requests to send")
    ] = 300,
    speedup: Annotated[float, typer.Option(help="replay the trace this many times faster")] = 20.0,
    max_tokens: Annotated[int, typer.Option(help="cap on output tokens per request")] = 64,
    trace: Annotated[Path, typer.Option(help="Mooncake-format JSONL trace")] = TRACE,
    fabric_path: FabricOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the final tally as JSON")] = False,
) -> None:
    """Replay the Mooncake conversation trace through the gateway, with a live view."""
    fabric = load(fabric_path)
    keys = demo_keys(fabric)
    if not keys:
        raise CliFailure("the fabric has none of the published demo keys; see examples/README.md")
    if speedup <= 0:
        raise CliFailure("--speedup must be positive")
    try:
        rows = load_mooncake(trace, requests, speedup)
    except OSError as exc:
        raise CliFailure(f"cannot read trace {trace}: {exc.strerror}") from None
    except TraceError as exc:
        raise CliFailure(str(exc)) from None
    prompts = []
    for k, row in enumerate(rows, start=1):
        try:
            prompts.append(prompt_from_hash_ids(row.hash_ids, row.prompt_tokens))
        except ValueError as exc:
            raise CliFailure(f"{trace}: request {k}: {exc}") from None
    mix = [t for t in _MIX if t in keys]
    tally = Tally()

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as session:
            try:
                async with session.get(url + "/health") as probe:
                    probe.raise_for_status()
            except aiohttp.ClientError:
                raise CliFailure(
                    f"no gateway answers at {url}; start one with `bin/isthmus up`"
                ) from None
            tasks = []
            start = time.monotonic()
            with Live(
                tally.view(url), console=console(), refresh_per_second=4, transient=as_json
            ) as live:
                for k, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
                    delay = row.arrival_s - (time.monotonic() - start)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tenant = mix[k % len(mix)]
                    output = max(1, min(max_tokens, row.output_tokens))
                    tasks.append(
                        asyncio.create_task(
                            _one(
                                session,
                                url,
                                keys[tenant],
                                tenant,
                                _MODELS[tenant],
                                prompt,
                                output,
                                tally,
                            )
                        )
                    )
                    live.update(tally.view(url))
                while not all(t.done() for t in tasks):
                    await asyncio.sleep(0.25)
                    live.update(tally.view(url))
                live.update(tally.view(url))

    asyncio.run(run())
    if as_json:
        ttft = tally.ttft_ms
        print(
            json.dumps(
                {
                    "sent": tally.sent,
                    "ok": tally.ok,
                    "refused": dict(tally.refused),
                    "errors": dict(tally.errors),
                    "by_site": dict(tally.by_site),
                    "ttft_ms_p50": statistics.median(ttft) if ttft else None,
                    "cache_hit_ratio": tally.cached_tokens / tally.prompt_tokens
                    if tally.prompt_tokens
                    else 0.0,
                },
                indent=2,
            )
        )
