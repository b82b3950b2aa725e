"""Human-readable sizes, as seed 002 shows them ("1.45 MB")."""

from __future__ import annotations


def human_size(num_bytes: int) -> str:
    """`num_bytes` in B, KB, MB or GB (powers of 1024), two decimals above bytes."""
    if num_bytes < 1024:
        return f"{num_bytes} B"
    value = float(num_bytes)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.2f} {unit}"
