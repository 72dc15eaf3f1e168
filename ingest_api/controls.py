"""Changing a running or waiting action: cancel, pause, resume, reschedule.

Each is one conditional UPDATE: it applies only in the states that allow it;
otherwise the answer is 409 with the action's current status.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkflow import sql
from ingest_api.actions import view
from ingest_api.errors import Conflict, JsonResponse, NotFound
from ingest_api.routes import ApiResources, caller, owned, read_json
from ingest_api.validation import parse
from schemas.bulk_action import Reschedule

_MAX_RESCHEDULE_BODY = 4 * 1024  # bytes: {"scheduled_for": ...} needs well under 100

_ALLOWED_FROM = {
    "cancel": "scheduled, queued, running, throttled or paused",
    "pause": "queued, running or throttled",
    "resume": "paused",
    "reschedule": "scheduled",
}


async def _change(
    request: Request, resources: ApiResources, account: str, change: str, *args: object
) -> Response:
    record = await owned(request, resources, account)
    changed = await resources.store.pool.fetchval(
        sql.postgres(f"bulk_actions_{change}"), record["id"], account, *args
    )
    current = await resources.store.get(account, record["id"])
    if current is None:
        raise NotFound("no such bulk action")
    if changed is None:
        raise Conflict(
            f"cannot {change} a bulk action that is {current['status']}",
            {"status": current["status"], "allowed_from": _ALLOWED_FROM[change]},
        )
    return JsonResponse(view(current, resources.rows_per_minute).model_dump(mode="json"))


async def cancel(request: Request) -> Response:
    resources, account = await caller(request)
    return await _change(request, resources, account, "cancel")


async def pause(request: Request) -> Response:
    resources, account = await caller(request)
    return await _change(request, resources, account, "pause")


async def resume(request: Request) -> Response:
    resources, account = await caller(request)
    return await _change(request, resources, account, "resume")


async def reschedule(request: Request) -> Response:
    # The caller first: an unknown or over-limit caller's body is never read.
    resources, account = await caller(request)
    body = await read_json(request, _MAX_RESCHEDULE_BODY)
    change = parse(Reschedule, body, "the new schedule is invalid")
    return await _change(request, resources, account, "reschedule", change.scheduled_for)


control_routes = [
    Route("/v1/bulk-actions/{action_id}/cancel", cancel, methods=["POST"]),
    Route("/v1/bulk-actions/{action_id}/pause", pause, methods=["POST"]),
    Route("/v1/bulk-actions/{action_id}/resume", resume, methods=["POST"]),
    Route("/v1/bulk-actions/{action_id}", reschedule, methods=["PATCH"]),
]
