"""``GET /docs``: Swagger UI for /openapi.json, its assets served by this service from the
``swagger-ui-bundle-v2`` package, so the page works with no network access."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

try:
    from swagger_ui_bundle import swagger_ui_path
except ImportError:  # pragma: no cover - a dependency; /docs then explains itself
    swagger_ui_path = None

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Kapı API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


async def docs(request: Request) -> HTMLResponse:
    """Browsable API documentation."""
    if swagger_ui_path is None:
        return HTMLResponse("<p>Install swagger-ui-bundle-v2 for /docs; the API is at /openapi.json.</p>")
    return HTMLResponse(PAGE)


def routes() -> list[BaseRoute]:
    docs_routes: list[BaseRoute] = [Route("/docs", docs, methods=["GET"], name="docs", include_in_schema=False)]
    if swagger_ui_path is not None:
        assets = StaticFiles(directory=Path(swagger_ui_path))
        docs_routes.append(Mount("/docs/assets", app=assets, name="docs_assets"))
    return docs_routes
