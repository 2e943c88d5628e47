"""The sampler names people know (AUTOMATIC1111's), without the schedulers behind them.

A web process validates requests with these names and must not import diffusers;
`inference.samplers` maps each name to its scheduler on the workers.
"""

from __future__ import annotations

SAMPLERS: frozenset[str] = frozenset({
    "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE Karras", "DDIM", "UniPC",
})
DEFAULT_SAMPLER = "Euler a"
