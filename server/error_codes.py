"""Every error code a client may meet, each defined once with what it means.

An error leaves as `{"code", "message", "data"?}` — the `error` object of an HTTP body, or
the fields of a WebSocket `error` frame or a `gen.error` event — and `data` carries what a
client acts on without parsing the message: `field` (the input it is about), `retry_after`
(seconds), limits. docs/PROTOCOL.md's table and docs/openapi.yaml's `Error.code` enum are
written from this module (`python -m server.error_codes --write-docs`); a test checks that
every code the code base raises is here and that the documents agree.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

CODES: dict[str, str] = {
    # Requests in general
    "invalid_input": "A parameter or field is not acceptable; `data.field` names it.",
    "invalid_json": "The body is not a JSON object (or not valid JSON).",
    "bad_request": "The request is malformed at the HTTP level.",
    "payload_too_large": "The body is over the limit for this route; it was not read.",
    "unsupported_media_type": "The body's Content-Type or content is not one this route takes.",
    "method_not_allowed": "The route does not take this method (`Allow` lists those it does).",
    "not_found": "No such thing, or not one the caller may see.",
    "forbidden": "Not allowed for this caller.",
    "conflict": "The request conflicts with the current state.",
    "gone": "The thing existed and is gone for good.",
    "rate_limited": "Too many of these; `data.retry_after` says in how many seconds to try again.",
    "unavailable": "A part the request needs does not answer (Redis); `data.retry_after` when known.",
    "internal_error": "Something went wrong on our side; it was logged.",
    "http_error": "Another HTTP-level refusal.",
    "bad_cursor": "A page cursor is not one this list gave.",
    "invalid_cursor": "A page cursor does not name an item of this list.",
    "too_long": "A text is over its length limit.",
    # Accounts and sign-in
    "unauthenticated": "Sign in first.",
    "sign_in_required": "This view is for signed-in people (e.g. the following feed).",
    "invalid_credentials": "Wrong username or password.",
    "invalid_token": "A bearer token that is invalid or revoked.",
    "xsrf": "A cookie-authenticated state change without the `_xsrf` cookie echoed in `X-XSRFToken`.",
    "invalid_username": "A username must be 3–32 lower-case letters, digits or underscores.",
    "username_taken": "Someone has that username.",
    "weak_password": "The password is too short or too common.",
    "password_too_long": "The password is over 256 characters (refused, never truncated).",
    "too_many_tokens": "The account has as many API tokens as allowed.",
    "user_not_found": "No such user.",
    "self_follow": "One cannot follow oneself.",
    "not_owner": "Only the owner may do this.",
    # The socket
    "bad_frame": "A WebSocket frame is not a msgpack map with a string `op`.",
    "unknown_op": "No such socket op.",
    "bad_topic": "Not a topic (room:<name>, user:<id>, job:<id>, collab:<id>).",
    "not_subscribed": "Subscribe to the room first.",
    "too_many_subscriptions": "A socket watches at most `data.limit` topics.",
    # Chat and community
    "ref_reused": "A chat `ref` already named a different message; use a new one per message.",
    "message_hidden": "A moderator hid the message; it cannot be edited.",
    "already_published": "The image is published in a post already.",
    "not_in_job": "The image is not one of that job's.",
    "job_not_done": "Only a finished job's images can be published.",
    # Jobs and generation
    "queue_full": "Too many jobs waiting (in all, or yours); try again when one has started.",
    "queue_unavailable": "The job queue does not answer; nothing was queued.",
    "job_finished": "The job has ended already.",
    "invalid_kind": "Not a kind of job this service runs.",
    "invalid_request": "The generation request is not acceptable.",
    "invalid_steps": "`steps` is out of range.",
    "invalid_size": "`width`/`height` are out of range or not multiples of 8.",
    "invalid_guidance": "`guidance` is not a finite number in range.",
    "invalid_seed": "`seed` is not an unsigned 32-bit integer.",
    "invalid_sampler": "Not a sampler this service has.",
    "invalid_batch": "`batch` is out of range.",
    "invalid_clip_skip": "`clip_skip` is out of range.",
    "invalid_strength": "`strength` is not in (0, 1].",
    "invalid_prompt": "The prompt is not a string (or empty where one is needed).",
    "prompt_too_long": "The prompt is over 2,000 characters.",
    "prompt_blocked": "The prompt asks for something this service does not make.",
    "invalid_image": "The image is not one that can be read (or its data breaks off).",
    "image_too_large": "The image is over the size or pixel limit (a decompression bomb is refused unread).",
    "image_too_small": "The image is smaller than the least side allowed.",
    "image_too_wide": "A side of the image is over the longest allowed.",
    "not_an_image": "No image was sent.",
    "invalid_preset": "Not a preset there is.",
    "invalid_lora": "A LoRA entry is not {name, weight} in range.",
    "unknown_lora": "No such LoRA.",
    "unknown_model": "No such model (or not one this service shares).",
    "invalid_mask": "An inpainting mask or its settings are not acceptable (img2img only; the message names the field).",
    "invalid_control": "A ControlNet unit is not acceptable; the message names the unit's field.",
    "unknown_controlnet": "No such ControlNet.",
    "controlnet_base_mismatch": "The ControlNet is made for another base model family.",
    "model_unavailable": "The worker could not load the model; the job failed alone.",
    "model_load_failed": "A model on disk could not be loaded.",
    "model_cache_full": "Models in use leave no room for this one within the memory budget.",
    "out_of_memory": "The device ran out of memory even after freeing every other model.",
    "generation_failed": "The job failed while running.",
    "encode_failed": "The finished image could not be encoded.",
    "storage_failed": "The images could not be stored.",
    "worker_lost": "The job stopped its worker too many times and is not tried again.",
    "unknown_kind": "No worker here runs this kind of job.",
    "inference_error": "The engine refused the job.",
    # Front doors (A1111 API, rooms, Discord)
    "imagine_off": "The room's owner (or a moderator) turned `/imagine` (and `/stylize`) off in this room.",
    "uploads_off": "The room takes no photos (for `/stylize`) until its owner (or a moderator) allows them.",
    "no_model": "No model is installed, so nothing can be generated yet.",
    "bad_signature": "A Discord interaction without a valid, recent Ed25519 signature (X-Signature-Ed25519/-Timestamp).",
    "unknown_interaction": "A signed Discord interaction of a type this bot does not handle (only PING and slash commands).",
    "cancelled": "The job was cancelled.",
    # Stylize: presets, photos, shares
    "unknown_preset": "No such style preset.",
    "preset_retired": "The preset was retired by a moderator.",
    "preset_unavailable": "A model the preset uses is missing here; `data` lists which.",
    "preset_exists": "A preset of that name exists.",
    "invalid_name": "Not a name a preset can have.",
    "missing_model": "(a preset's reason) Its checkpoint is not in the models folder.",
    "missing_lora": "(a preset's reason) A LoRA it uses is not in the models folder.",
    "missing_controlnet": "(a preset's reason) A ControlNet it uses is missing or made for another base.",
    "invalid_photo": "The photo cannot be used (a stylize job).",
    "photo_too_wide": "The photo is wider or taller than 4:1.",
    "unknown_photo": "`photo_of` is not a stylize job of yours with a photo (or a room message's `photo` is not one "
                     "you uploaded in the last hour).",
    "no_original": "The post or share does not show its original photo.",
    # Collaborative sessions
    "session_closed": "The session is closed.",
    "bad_update": "A collaborative update is not a y-protocols message this session accepts.",
    "update_too_large": "A collaborative update is over the size limit.",
    "document_too_large": "The session's document is over its size limit.",
    "not_your_client": "Awareness may only speak for one's own client id.",
    "owner": "The owner cannot be removed from a session; close it instead.",
    "invite_expired": "The invitation has expired.",
    "invite_revoked": "The invitation was revoked.",
    "invite_used_up": "The invitation admitted as many people as it may.",
    # Model hub: models, versions, uploads
    "name_taken": "The owner has a model with that name.",
    "version_exists": "The model has a version of that name.",
    "version_gone": "The version was deleted.",
    "file_exists": "The version has a file of that name.",
    "invalid_filename": "Not a file name that can be stored.",
    "unsupported_file_type": "Only .safetensors files are taken.",
    "pickle_refused": "A pickle checkpoint can run code when loaded; convert it to .safetensors.",
    "invalid_model_file": "The file is not a safetensors model.",
    "empty_file": "The file is empty.",
    "not_safetensors": "The file is not a safetensors file at all (e.g. text renamed to .safetensors).",
    "truncated": "The file ends before its data does.",
    "header_too_large": "The safetensors header is over 16 MiB.",
    "bad_header": "The safetensors header is not a JSON object of tensors.",
    "bad_metadata": "The safetensors `__metadata__` is not a map of strings.",
    "bad_tensor": "A tensor entry is not {dtype, shape, data_offsets}.",
    "bad_shape": "A tensor's shape is not a list of non-negative integers.",
    "bad_offsets": "A tensor's data offsets are not two ordered integers.",
    "unknown_dtype": "A tensor's dtype is not one safetensors defines.",
    "shape_mismatch": "A tensor's shape and dtype do not fit its data span.",
    "duplicate_tensor": "Two tensors have the same name.",
    "no_tensors": "The file holds no tensors.",
    "span_outside_data": "A tensor's data lies outside the file's data area.",
    "overlapping_spans": "Two tensors' data overlap.",
    "out_of_order_span": "Tensors' data are not in order.",
    "gap_in_data": "The data area has bytes no tensor uses.",
    "trailing_bytes": "Bytes follow the last tensor's data.",
    "tus_version": "The tus protocol version is not 1.0.0.",
    "upload_not_found": "No such upload (or it expired and was swept).",
    "upload_expired": "The upload expired before it finished.",
    "upload_busy": "Another request is writing this upload.",
    "offset_mismatch": "A tus chunk does not start where the upload stands.",
    "checksum_algorithm": "A tus checksum algorithm this server does not support.",
    "checksum_mismatch": "A tus chunk's checksum does not match its bytes.",
    "range_not_satisfiable": "The requested byte range lies outside the file.",
    "entry_not_found": "No such file in that revision (Hugging Face paths).",
    "repo_not_found": "No such model (Hugging Face paths).",
    "revision_not_found": "No such revision (Hugging Face paths).",
}

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"
OPENAPI_YAML = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
BEGIN, END = "<!-- error-codes:begin -->", "<!-- error-codes:end -->"
ENUM_RE = re.compile(r"(# error-codes: written by server/error_codes.py\n\s*enum: )\[[^\]]*\]")


def markdown_table() -> str:
    rows = "\n".join(f"| `{code}` | {meaning} |" for code, meaning in sorted(CODES.items()))
    return f"{BEGIN}\n| code | meaning |\n|---|---|\n{rows}\n{END}"


def protocol_text(current: str) -> str:
    """PROTOCOL.md with its error-code table written from CODES."""
    start, end = current.index(BEGIN), current.index(END) + len(END)
    return current[:start] + markdown_table() + current[end:]


def openapi_text(current: str) -> str:
    """openapi.yaml with `Error.code`'s enum written from CODES."""
    return ENUM_RE.sub(lambda m: m.group(1) + "[" + ", ".join(sorted(CODES)) + "]", current, count=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the error codes into docs/PROTOCOL.md and docs/openapi.yaml.")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.write_docs:
        PROTOCOL_MD.write_text(protocol_text(PROTOCOL_MD.read_text()))
        OPENAPI_YAML.write_text(openapi_text(OPENAPI_YAML.read_text()))
    else:
        print(markdown_table())


if __name__ == "__main__":
    main()
