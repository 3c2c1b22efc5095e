"""Where a process spends its time, from py-spy's collapsed stacks (``py-spy record -f raw``).

Self time goes to a stack's innermost frame; a sample also counts for the *component* that
owns it: the garbage collector if a collection is on the stack, the system calls of socket
I/O and polling, else the package of the innermost Python frame (interpreter time spent
running a package's code is that package's cost). Frames are aggregated over line numbers.
"""

from __future__ import annotations

import collections
from typing import Any


def hotspots(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Top functions by self samples, Python functions by inclusive samples, and self samples
    by component, from py-spy's collapsed stacks (``frame;frame;... count``)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    components: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            if ".py)" in f:
                inclusive[f] += n
        components[_component(frames)] += n

    def pct(n: int) -> float:
        return round(100.0 * n / total, 2) if total else 0.0

    return {
        "samples": total,
        "self_top": [{"function": f, "pct": pct(n)} for f, n in own.most_common(top)],
        "inclusive_top_python": [
            {"function": f, "pct": pct(n)} for f, n in inclusive.most_common(top + 10)
        ],
        "self_by_component": [{"component": c, "pct": pct(n)} for c, n in components.most_common()],
    }


def _frame(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (path/file.py)``: aggregate over lines."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    if where and where.rsplit(":", 1)[-1].isdigit():
        where = where.rsplit(":", 1)[0]
    return f"{name} ({where})" if where else name


_SYSCALLS = frozenset(
    "read write readv writev send sendto sendmsg recv recvfrom recvmsg epoll_wait epoll_pwait "
    "epoll_ctl accept accept4 close getsockname getpeername setsockopt getsockopt ioctl getpid "
    "clock_gettime syscall futex sched_yield".split()
)


def _component(frames: list[str]) -> str:
    """Who a sample's time belongs to: the GC, a system call, or the package of the innermost
    Python frame (interpreter time running that package's code counts as that package)."""
    if any(f.startswith(("gc_collect", "collect (gcmodule")) for f in frames):
        return "python gc"
    leaf = frames[-1]
    if leaf.split(" (")[0] in _SYSCALLS:
        return "system calls (socket I/O, epoll)"
    for f in reversed(frames):
        if ".py)" in f:
            path = f.rsplit(" (", 1)[1].rstrip(")")
            parts = path.split("/")
            if parts[0] == "isthmus" and len(parts) > 1:
                return "/".join(parts[:2]).removesuffix(".py")
            return parts[0].removesuffix(".py")
    return leaf.split(" (")[-1].rstrip(")") or "?"
