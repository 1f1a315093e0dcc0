"""`/_control/*`: steer the local exchange at run time (faults, clock); see CONTROL.md."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from daemon.localexchange.rest import LX_KEY

# action -> (target, method): "faults" = LocalExchange.faults, "lx" = the LocalExchange itself
ACTIONS: dict[str, tuple[str, str]] = {
    **{
        name: ("faults", name)
        for name in (
            "drop_websockets",
            "rest_error",
            "rest_timeout",
            "rest_delay",
            "stall",
            "resume",
            "malformed",
            "bad_ohlc",
            "skip_bars",
            "clear",
        )
    },
    "pause_clock": ("lx", "pause_clock"),
    "resume_clock": ("lx", "resume_clock"),
    "set_speed": ("lx", "set_speed"),
    "advance": ("lx", "advance"),
}


def apply(lx: Any, action: str, kwargs: dict[str, Any]) -> Any:
    """Run one control action with keyword arguments; ValueError/TypeError on bad input."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    target, method = ACTIONS[action]
    return getattr(lx.faults if target == "faults" else lx, method)(**kwargs)


async def control_handler(request: web.Request) -> web.Response:
    """POST /_control/<action> with a JSON object of keyword arguments."""
    lx, action = request.app[LX_KEY], request.match_info["action"]
    try:
        text = await request.text()
        kwargs = json.loads(text) if text.strip() else {}
        if not isinstance(kwargs, dict):
            raise ValueError("body must be a JSON object of keyword arguments")
        result = apply(lx, action, kwargs)
    except (ValueError, TypeError) as e:
        return web.json_response({"ok": False, "error": str(e)}, status=400)
    return web.json_response({"ok": True, "result": result, "status": lx.status()})


async def status_handler(request: web.Request) -> web.Response:
    """GET /_control/status."""
    return web.json_response(request.app[LX_KEY].status())


def add_control_routes(app: web.Application) -> None:
    """Mount the control endpoints."""
    app.router.add_get("/_control/status", status_handler)
    app.router.add_post("/_control/{action}", control_handler)
