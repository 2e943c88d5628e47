"""What `/imagine <prompt>` renders, wherever it is typed (a chat room, Discord): one definition of its job."""

from __future__ import annotations

from typing import Any

from config import Settings
from server.errors import Unavailable
from server.jobs import JobService


async def imagine_params(settings: Settings, jobs: JobService, prompt: str, *, model: str | None = None
                         ) -> dict[str, Any]:
    """The public txt2img job of `/imagine`: `model`, else the configured one, else the first installed."""
    params: dict[str, Any] = {"kind": "txt2img", "model": model or settings.imagine_model or await _first_model(jobs),
                              "prompt": prompt, "steps": settings.imagine_steps, "public": True}
    if settings.imagine_side_px:
        params["width"] = params["height"] = settings.imagine_side_px
    return params


async def _first_model(jobs: JobService) -> str:
    names = sorted(model["name"] for model in (await jobs.catalogue())["models"])
    if not names:
        raise Unavailable("No model is installed, so nothing can be imagined yet.", code="no_model")
    return names[0]
