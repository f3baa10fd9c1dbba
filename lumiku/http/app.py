"""`create_app(deps)`: the quart-trio app behind the edge middleware."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, request
from quart_trio import QuartTrio

from lumiku.accounts import routes as accounts_routes
from lumiku.apps import routes as apps_routes
from lumiku.credits import routes as credits_routes
from lumiku.http import files, health, metrics, openapi, sse, ws
from lumiku.http.bodies import refuse_bad_parameters
from lumiku.http.context import DEPS_KEY
from lumiku.http.middleware import EdgeMiddleware
from lumiku.http.problems import register_error_handlers
from lumiku.http.ratelimit import LIMITER_KEY
from lumiku.http.uploads import BodyLimitedRequest, PacedUploads, close_spooled_uploads
from lumiku.jobs import routes as jobs_routes
from lumiku.payments import routes as payments_routes

if TYPE_CHECKING:
    from collections.abc import Iterable

    from lumiku.deps import Deps


async def _record_route() -> None:
    rule = request.url_rule
    if rule is not None:
        request.scope["lumiku.route"] = rule.rule  # type: ignore[typeddict-unknown-key]


def create_app(deps: Deps, blueprints: Iterable[Blueprint] = ()) -> EdgeMiddleware:
    """Build the ASGI application: quart-trio routes wrapped in `EdgeMiddleware`.

    `blueprints` lets tests and benchmarks add routes of their own.
    """
    app = QuartTrio("lumiku")
    app.request_class = BodyLimitedRequest  # upload routes get the body limit the edge chose
    app.config["MAX_CONTENT_LENGTH"] = deps.settings.http.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[DEPS_KEY] = deps
    app.extensions[LIMITER_KEY] = deps.limiter
    register_error_handlers(app)
    app.before_request(_record_route)
    app.before_request(apps_routes.gate_disabled_apps)
    app.teardown_request(close_spooled_uploads)  # uploads' temporary files
    app.before_request(refuse_bad_parameters)  # no control character reaches a route
    app.register_blueprint(health.blueprint)
    app.register_blueprint(ws.blueprint)
    app.register_blueprint(accounts_routes.blueprint)
    app.register_blueprint(credits_routes.blueprint)
    app.register_blueprint(apps_routes.blueprint)
    app.register_blueprint(jobs_routes.blueprint)
    app.register_blueprint(sse.blueprint)
    app.register_blueprint(files.blueprint)
    app.register_blueprint(payments_routes.blueprint)
    app.register_blueprint(openapi.blueprint)
    for app_blueprint in deps.apps.blueprints():
        app.register_blueprint(app_blueprint)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return EdgeMiddleware(
        PacedUploads(app),
        deps.settings,
        health.probes(deps),
        endpoints=metrics.endpoints(deps),
        metrics=deps.metrics.http,
        shutdown=deps.shutdown,
    )
