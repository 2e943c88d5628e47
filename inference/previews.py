"""Step previews: predicted clean image -> small RGB on the worker, encode elsewhere.

On the worker thread the predicted x0 latents (the scheduler's `pred_original_sample`
where it has one, DPM-Solver's stored x0 prediction, else the current latents) go through
the family's linear latent -> RGB map: a 4x3 matrix product on a tensor 1/8 of the image
side, a few microseconds on a GPU. Only that small uint8 array leaves the worker.
Resizing and WebP/JPEG encoding run on a separate encoder thread so the GPU never waits
for an encoder, and a per-job rate cap drops intermediate frames instead of queueing
them (the last step is always sent, so a client always sees the final preview).
"""

from __future__ import annotations

import functools
import io
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

# Linear latent -> RGB approximations (rows: latent channels, columns: R, G, B), the
# widely used fits of each family's VAE decoder to a single matrix (plus bias for SDXL).
LATENT_RGB_FACTORS: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd1": (
        [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
        [0.1084, -0.0175, -0.0011],
    ),
}
LATENT_RGB_FACTORS["sd2"] = LATENT_RGB_FACTORS["sd1"]  # same VAE as SD 1.x

DEFAULT_PREVIEW_FPS = 8.0  # per job: enough to look live, cheap enough for many watchers
DEFAULT_PREVIEW_MAX_SIDE_PX = 256
DEFAULT_PREVIEW_FORMAT = "webp"
PREVIEW_QUALITY = 70
MIME = {"webp": "image/webp", "jpeg": "image/jpeg"}


class LinearPreviewer:
    """Latents (B, 4, h, w) -> uint8 RGB (h, w, 3) of the first image, by a fixed matrix."""

    name = "linear"

    def __init__(self, family: str) -> None:
        factors, bias = LATENT_RGB_FACTORS[family]
        self._factors = torch.tensor(factors)
        self._bias = torch.tensor(bias)
        self._on: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        key = (latents.device, latents.dtype)
        if key not in self._on:
            self._on[key] = (self._factors.to(*key), self._bias.to(*key))
        factors, bias = self._on[key]
        rgb = torch.einsum("chw,cr->hwr", latents[0], factors) + bias
        rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)
        return rgb.cpu().numpy()


class TaesdPreviewer:
    """A TAESD (AutoencoderTiny) decode for sharper previews, used when its weights are local."""

    name = "taesd"

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        param = next(self.decoder.parameters())
        sample = self.decoder.decode(latents[:1].to(param.device, param.dtype)).sample[0]
        rgb = ((sample.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(1, 2, 0)
        return rgb.cpu().numpy()


class X0Tap:
    """Wraps a scheduler's `step` to keep the latest predicted clean latents (x0).

    Euler, Euler a, DDIM and others return `pred_original_sample`; DPM-Solver++ keeps its
    x0 prediction in `model_outputs[-1]`. Where neither exists, the preview falls back to
    the current (noisy) latents.
    """

    def __init__(self, scheduler: Any) -> None:
        self.x0: torch.Tensor | None = None
        self._step = scheduler.step
        # wraps() keeps step's signature visible: diffusers inspects it to decide whether
        # to pass `generator`, and without it Euler a would draw from the global RNG.
        @functools.wraps(self._step)
        def step(*args: Any, **kwargs: Any) -> Any:
            return self._tapped_step(*args, **kwargs)

        scheduler.step = step

    def _tapped_step(self, *args: Any, **kwargs: Any) -> Any:
        out = self._step(*args, **kwargs)
        pred = getattr(out, "pred_original_sample", None)
        if pred is None and isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
            pred = out[1]
        if pred is None:
            scheduler = getattr(self._step, "__self__", None)
            outputs = getattr(scheduler, "model_outputs", None)
            algorithm = getattr(getattr(scheduler, "config", None), "algorithm_type", "")
            if outputs and outputs[-1] is not None and "dpmsolver++" in str(algorithm):
                pred = outputs[-1]
        self.x0 = pred
        return out

    def take(self, fallback: torch.Tensor) -> torch.Tensor:
        x0, self.x0 = self.x0, None
        return x0 if x0 is not None else fallback


@dataclass
class PreviewThrottle:
    """Per-job rate cap: emit at most `fps` frames a second, always the last step."""

    fps: float
    last_sent: float = field(default=-1e18)
    dropped: int = 0

    def admit(self, step: int, total: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if step >= total or self.fps <= 0 or now - self.last_sent >= 1.0 / self.fps:
            self.last_sent = now
            return True
        self.dropped += 1
        return False


@dataclass
class PreviewFrame:
    step: int
    total: int
    rgb: np.ndarray
    deliver: Callable[[int, int, str, bytes], None]
    max_side: int = DEFAULT_PREVIEW_MAX_SIDE_PX
    fmt: str = DEFAULT_PREVIEW_FORMAT


def encode_frame(rgb: np.ndarray, max_side: int, fmt: str) -> bytes:
    """Upscale the latent-sized RGB to at most `max_side` and encode it."""
    image = Image.fromarray(rgb, "RGB")
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale > 1 or scale < 1:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if fmt == "webp":
        image.save(out, format="WEBP", quality=PREVIEW_QUALITY, method=0)  # method 0: fastest
    else:
        image.save(out, format="JPEG", quality=PREVIEW_QUALITY)
    return out.getvalue()


class PreviewEncoder:
    """One thread that encodes preview frames and runs other small post-GPU work in order.

    Work is FIFO, so a job's final result (queued after its last preview) is delivered
    after that preview. Producers drop frames before queueing (see `PreviewThrottle` and
    `in_flight`), so the queue holds at most one frame per running job.
    """

    def __init__(self, name: str = "va-preview-encoder") -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.encoded = 0
        self.encode_seconds = 0.0

    def submit_frame(self, frame: PreviewFrame, done: Callable[[], None] | None = None) -> None:
        def work() -> None:
            started = time.perf_counter()
            try:
                data = encode_frame(frame.rgb, frame.max_side, frame.fmt)
            finally:
                self.encode_seconds += time.perf_counter() - started
                self.encoded += 1
                if done is not None:
                    done()
            frame.deliver(frame.step, frame.total, MIME[frame.fmt], data)

        self._queue.put(work)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the encoder thread after everything queued before it."""
        self._queue.put(fn)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:
                log.exception("preview encoder work failed")

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
