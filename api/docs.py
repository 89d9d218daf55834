"""`GET /docs`: the OpenAPI document (`/openapi.json`) in Swagger UI.

Swagger UI's files come from the installed `swagger-ui-bundle-v2` distribution and are served from
here, never from a CDN: the page works on a machine without internet access, and what it runs is
the version pinned in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>recog API</title>
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""


async def docs_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_PAGE)


routes: list[BaseRoute] = [
    Route("/docs", docs_page, methods=["GET"]),
    Mount(ASSETS, app=StaticFiles(directory=Path(str(swagger_ui_path))), name="docs-assets"),
]
