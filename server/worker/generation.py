"""txt2img, img2img and stylize jobs on the engine (inference/): a worker's diffusion kind."""

from __future__ import annotations

from typing import Any

from inference.engine import Engine, Job
from inference.errors import GenerationCancelled, InferenceError, UnknownModel
from inference.events import JobEvent
from inference.requests import ControlUnit, GenerationRequest
from server.jobs.kinds import GENERATION_FIELDS, MASK_FIELDS, STYLIZE_KIND
from server.worker.kinds import JobContext, Outcome

# Engine codes that mean "this worker cannot load the model" (missing here, unreadable, wrong format).
UNAVAILABLE_CODES = {"unknown_model", "model_load_failed"}


def engine_request(settings: dict[str, Any], input_image: bytes | None,
                   input_mask: bytes | None = None) -> GenerationRequest:
    """The request a stored job asks for, its input image put back where it goes.

    A stylize job's settings name the engine's kind as `mode` (the row's kind is `stylize`)
    and keep their ControlNet units without the image: each unit gets the job's photo, and so
    does the init image of an img2img one. Fields that are only for people (the preset, the
    subject) stay out.
    """
    fields = {name: settings[name] for name in (*GENERATION_FIELDS, *MASK_FIELDS) if name in settings}
    fields["kind"] = settings.get("mode", fields.get("kind", "txt2img"))
    units = tuple(ControlUnit(**unit, image=input_image or b"") for unit in settings.get("controls", ()))
    init_image = input_image if fields["kind"] == "img2img" else None
    return GenerationRequest(**fields, init_image=init_image, controls=units, mask=input_mask)


class GenerationKind:
    kinds = ("txt2img", "img2img", STYLIZE_KIND)

    def __init__(self, engine: Engine):
        self.engine = engine
        self._jobs: dict[str, Job] = {}

    def loaded_models(self) -> set[str]:
        return {name for worker in self.engine.workers for name in worker.cache.resident()}

    async def run(self, context: JobContext) -> Outcome:
        job_id = context.job.id
        steps = [0]

        def on_event(event: JobEvent) -> None:
            steps[0] = getattr(event, "step", steps[0]) if event.type == "progress" else steps[0]
            context.emit(event)

        try:
            request = engine_request(context.settings, context.input_image, context.input_mask)
            engine_job = self.engine.submit(request, on_event, job_id=job_id)
        except UnknownModel as exc:
            return Outcome.failed("model_unavailable", f"This worker has no model {context.job.model!r}: {exc}")
        except InferenceError as exc:
            return Outcome.failed(exc.code, str(exc))
        self._jobs[job_id] = engine_job
        try:
            result = await engine_job
        except GenerationCancelled:
            return Outcome("cancelled", step=steps[0])
        except InferenceError as exc:
            code = "model_unavailable" if exc.code in UNAVAILABLE_CODES else exc.code
            return Outcome.failed(code, exc.message)
        finally:
            self._jobs.pop(job_id, None)
        return Outcome("done", images=result.images, timings=result.timings, event={"seed": request.seed})

    def stop(self, job_id: str, keep: bool = False) -> None:
        engine_job = self._jobs.get(job_id)
        if engine_job is not None:
            engine_job.cancel(keep=keep)

    async def close(self) -> None:
        await self.engine.aclose()
