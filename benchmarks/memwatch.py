"""Memory and machine facts shared by the scale benchmarks.

``PeakMemory`` samples a process (and, with ``tree=True``, every process below it: DataLoader
workers, pool workers) in a background thread and keeps the peaks of the summed resident set
(RSS), and, where the kernel reports them, of the summed unique (USS) and proportional (PSS)
set sizes. Forked workers share most of their pages with their parent, so summed RSS counts
those pages once per process; PSS divides each shared page among its sharers and is the fair
total. For the process itself the anonymous part of the RSS (``RssAnon``) is tracked too: it
excludes file-backed pages such as memory-mapped embeddings, which the kernel can drop.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import threading
import time
from typing import Any

import psutil

GB = 1024**3


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / GB, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def status_gb(field: str = "VmRSS") -> float:
    """A memory line of this process's /proc status (VmRSS, VmHWM, RssAnon, RssFile) in GB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / GB
    return float("nan")


def max_rss_gb() -> float:
    """This process's peak RSS since it started (the kernel's high-water mark)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def free_disk_gb(path: str | os.PathLike[str]) -> float:
    """Free space of the file system holding ``path`` (or its nearest existing parent)."""
    p = os.path.abspath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return psutil.disk_usage(p).free / GB


def folder_gb(path: str | os.PathLike[str]) -> float:
    """Bytes of the files under ``path``, in GB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while walking
                total += os.lstat(os.path.join(root, name)).st_size
    return total / GB


class PeakMemory:
    """Peak memory of a process (tree) over a ``with`` block, sampled every ``interval`` s.

    ``pid`` defaults to this process. ``full`` adds USS and PSS (read from smaps: slower per
    sample, exact about shared pages). ``limit_gb`` calls ``on_limit(gb)`` once when the summed
    RSS passes it (a watchdog that can kill a runaway process before the machine swaps).
    Setting ``phase`` to a name keeps that phase's peaks apart as well (``<phase>_peak_*``).
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        tree: bool = False,
        full: bool = False,
        interval: float = 0.2,
        limit_gb: float | None = None,
        on_limit: Any = None,
    ) -> None:
        self.pid = pid or os.getpid()
        self.tree = tree
        self.full = full
        self.interval = interval
        self.limit_gb = limit_gb
        self.on_limit = on_limit
        self.peak = {"rss": 0.0, "uss": 0.0, "pss": 0.0, "anon": 0.0, "processes": 0}
        self.phase = ""  # set it to start a phase: peaks are kept per phase too
        self.phase_peaks: dict[str, dict[str, float]] = {}
        self.start = {"rss": 0.0, "anon": 0.0}
        self.limit_hit: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *(root.children(recursive=True) if self.tree else [])]
        except psutil.Error:
            return []

    def sample(self) -> dict[str, float]:
        """One reading: summed RSS (and USS, PSS) of the processes, in GB."""
        out = {"rss": 0.0, "uss": 0.0, "pss": 0.0, "processes": 0}
        for proc in self._processes():
            try:
                if self.full:
                    info = proc.memory_full_info()
                    out["uss"] += info.uss / GB
                    out["pss"] += getattr(info, "pss", 0) / GB
                else:
                    info = proc.memory_info()
                out["rss"] += info.rss / GB
                out["processes"] += 1
            except psutil.Error:
                continue  # a worker that just exited
        if self.pid == os.getpid():
            out["anon"] = status_gb("RssAnon")
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self._record(self.sample())
            self._stop.wait(self.interval)

    def _record(self, now: dict[str, float]) -> None:
        phase = self.phase_peaks.setdefault(self.phase, {}) if self.phase else {}
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
            if self.phase:
                phase[key] = max(phase.get(key, 0.0), value)
        if self.limit_gb is not None and self.limit_hit is None and now["rss"] > self.limit_gb:
            self.limit_hit = now["rss"]
            if self.on_limit is not None:
                self.on_limit(now["rss"])

    def __enter__(self) -> PeakMemory:
        first = self.sample()
        self.start = {"rss": first["rss"], "anon": first.get("anon", 0.0)}
        self._record(first)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record(self.sample())

    def report(self) -> dict[str, float]:
        """Peaks in GB (rounded), and the growth over the first reading."""
        out = {
            "peak_rss_gb": round(self.peak["rss"], 3),
            "rss_growth_gb": round(self.peak["rss"] - self.start["rss"], 3),
            "max_processes": int(self.peak["processes"]),
        }
        if self.full:
            out["peak_uss_gb"] = round(self.peak["uss"], 3)
            out["peak_pss_gb"] = round(self.peak["pss"], 3)
        if self.pid == os.getpid():
            out["peak_anon_gb"] = round(self.peak["anon"], 3)
            out["anon_growth_gb"] = round(self.peak["anon"] - self.start["anon"], 3)
        for name, peaks in self.phase_peaks.items():
            out[f"{name}_peak_rss_gb"] = round(peaks["rss"], 3)
            if self.full:
                out[f"{name}_peak_pss_gb"] = round(peaks["pss"], 3)
        return out
