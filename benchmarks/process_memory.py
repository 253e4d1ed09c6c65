"""This process's memory, read from /proc (Linux): what the CPU benchmarks report as peak RSS."""
from __future__ import annotations

MB = 1024.0**2


def status_kb(field: str) -> float:
    """A field of /proc/self/status in kB (VmRSS, VmHWM, ...); RuntimeError if the kernel does not report it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> float:
    """Reset this process's peak RSS (VmHWM) to its current RSS (/proc/self/clear_refs); returns that RSS in
    bytes (read as the new peak: a later peak is never below it, while the RSS read a moment later can be)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kb("VmHWM") * 1024


def peak_rss_bytes() -> float:
    """This process's peak RSS (VmHWM) in bytes since the last :func:`reset_peak_rss`."""
    return status_kb("VmHWM") * 1024
