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


# The console's theme (kept by its switch under "theme" in localStorage, else the system's), and a way back.
_THEME_AND_BAR = """<meta name="viewport" content="width=device-width, initial-scale=1">
<script>
(() => {
  const chosen = localStorage.getItem("theme");
  const system = matchMedia("(prefers-color-scheme: dark)").matches;
  const dark = chosen === "dark" || ((!chosen || chosen === "system") && system);
  document.documentElement.classList.toggle("dark", dark);
})();
</script>
<style>
.kwik-bar{display:flex;align-items:center;gap:12px;padding:12px 20px;border-bottom:1px solid #ddd;
  font:500 14px/1.4 system-ui,sans-serif;background:#fff}
.kwik-bar a{color:#3e63dd;text-decoration:none}.kwik-bar a:hover{text-decoration:underline}
html.dark,html.dark body{background:#111113;color:#eee}
html.dark .kwik-bar{background:#18191b;border-color:#2e3135}html.dark .kwik-bar a{color:#9eb1ff}
/* Swagger UI has no dark theme: its light one, inverted, with pictures turned back. */
html.dark .swagger-ui{filter:invert(88%) hue-rotate(180deg)}
html.dark .swagger-ui img,html.dark .swagger-ui .microlight{filter:invert(100%) hue-rotate(180deg)}
</style>"""

_BAR = """<nav class="kwik-bar" aria-label="Console"><a href="/">&larr; Back to the console</a>
<span aria-hidden="true">&middot;</span><span>Kwik Console API</span></nav>"""

_SWAGGER_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kwik Console API</title>
<link rel="stylesheet" href="/api/v1/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/v1/docs/favicon-32x32.png">"""
    + _THEME_AND_BAR.replace("%", "%%")
    + "</head>\n<body>"
    + _BAR
    + """<main><div id="swagger-ui"></div></main>
<script src="/api/v1/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "%(spec)s", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: false, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
</script></body></html>
"""
)

# A plain list of operations, for a console installed without the Swagger UI package.
_PLAIN_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kwik Console API</title>"""
    + _THEME_AND_BAR.replace("%", "%%")
    + """<style>main{font:15px/1.5 system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em}
h3{margin-bottom:.2em}</style></head>
<body>"""
    + _BAR
    + """<main><h1>Kwik Console API</h1><p>The OpenAPI 3.1 description: <a href="%(spec)s">%(spec)s</a></p>
<div id="ops">Loading…</div>
<script>
fetch("%(spec)s").then(r => r.json()).then(spec => {
  const out = document.getElementById("ops"); out.textContent = "";
  for (const [path, ops] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(ops)) {
    const h = document.createElement("h3"); h.textContent = method.toUpperCase() + " " + path; out.append(h);
    const p = document.createElement("p"); p.textContent = op.summary || ""; out.append(p);
  }
});
</script></main></body></html>
"""
)


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
