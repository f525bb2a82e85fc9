"""Process figures for stats and `bench`: resident memory and the process's age, read from /proc."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def rss_mb() -> float:
    """Resident memory of this process (MB), from /proc when available, else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_split_mb() -> dict[str, float]:
    """Resident memory split (MB) into private anonymous pages (``anon``: what this process and
    its libraries allocated) and file-backed pages (``file``: mapped code and data of the shared
    libraries, which the kernel may map more or less of depending on its page cache: right after
    a pip install, large page-cache folios make the same libraries count ~40 MB more).
    Empty where /proc does not tell."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line[3:7].lower()] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return out


def process_age_s() -> float:
    """Seconds since this process started (from /proc; 0 where unavailable)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime_s - started_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0
