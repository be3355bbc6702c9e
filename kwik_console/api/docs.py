"""GET /api/v1/docs: Swagger UI, served from this process (PyPI `swagger-ui-bundle-v2`), never from a CDN.

Without that package the page still lists every operation, rendered from openapi.json by a few lines of script.
"""

from __future__ import annotations

import html
import mimetypes

from fastapi import APIRouter
from starlette.responses import FileResponse, HTMLResponse, Response

from kwik_console.api.problems import problem_response
from kwik_console.team import access

router = APIRouter(prefix=access.API_PREFIX)
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
SPEC_URL = "/api/v1/openapi.json"


def _bundle():
    try:  # an optional package: without it the page says so instead of failing at start
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return swagger_ui_path


_SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kwik Console API</title>
<link rel="stylesheet" href="/api/v1/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/v1/docs/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/api/v1/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "%(spec)s", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: false, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
</script></body></html>
"""

# A plain list of operations, for a console installed without the Swagger UI package.
_PLAIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kwik Console API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em}
code{background:#f3f3f3;padding:0 .3em}h3{margin-bottom:.2em}</style></head>
<body><h1>Kwik Console API</h1><p>The OpenAPI 3.1 description: <a href="%(spec)s">%(spec)s</a></p>
<div id="ops">Loading…</div>
<script>
fetch("%(spec)s").then(r => r.json()).then(spec => {
  const out = document.getElementById("ops"); out.textContent = "";
  for (const [path, ops] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(ops)) {
    const h = document.createElement("h3"); h.textContent = method.toUpperCase() + " " + path; out.append(h);
    const p = document.createElement("p"); p.textContent = op.summary || ""; out.append(p);
  }
});
</script></body></html>
"""


@router.get("/docs", include_in_schema=False)
def docs_page() -> HTMLResponse:
    page = _SWAGGER_PAGE if _bundle() is not None else _PLAIN_PAGE
    return HTMLResponse(page % {"spec": html.escape(SPEC_URL)}, headers={"Cache-Control": "no-cache"})


@router.get("/docs/{asset}", include_in_schema=False)
def docs_asset(asset: str) -> Response:
    bundle = _bundle()
    if bundle is None or asset not in ASSETS:
        return problem_response(
            f"/api/v1/docs/{asset}", 404, "not_found", "Not found", f"There is no documentation file {asset[:60]}."
        )
    path = bundle / asset
    return FileResponse(
        str(path), media_type=mimetypes.guess_type(asset)[0], headers={"Cache-Control": "public, max-age=86400"}
    )
