"""Sampler names people know (AUTOMATIC1111's) mapped to diffusers schedulers.

Each job builds a fresh scheduler from the model's own scheduler config, so the beta
schedule, prediction type and timestep spacing a checkpoint was trained with carry over
and no state leaks between jobs.
"""

from __future__ import annotations

from typing import Any, Callable

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from inference.sampler_names import SAMPLERS

# name -> (scheduler class, config overrides); the names are exactly sampler_names.SAMPLERS (a test checks).
_SAMPLER_TABLE: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ 2M SDE Karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": (DDIMScheduler, {"set_alpha_to_one": False}),
    "UniPC": (UniPCMultistepScheduler, {}),
}



def make_scheduler(name: str, base_config: dict[str, Any]) -> SchedulerMixin:
    """A new scheduler of the named kind, built from a model's scheduler config."""
    try:
        cls, overrides = _SAMPLER_TABLE[name]
    except KeyError:
        raise ValueError(f"`sampler` {name!r} is unknown; choose one of {sorted(SAMPLERS)}.") from None
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    # A Karras choice on one sampler must not stick to the next job's plain choice.
    config.pop("use_karras_sigmas", None)
    config.pop("algorithm_type", None)
    config.update(overrides)
    return cls.from_config(config)


SchedulerFactory = Callable[[str, dict[str, Any]], SchedulerMixin]
