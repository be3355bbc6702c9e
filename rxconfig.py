import reflex as rx
from reflex_base.plugins.sitemap import SitemapPlugin

from kwik_console.core.settings import from_env

_settings = from_env()

config = rx.Config(
    app_name="kwik_console",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", gray_color="slate", radius="medium"))],
    # A private console has no use for a sitemap.
    disable_plugins=[SitemapPlugin],
    # Hosted: the websocket answers 403 to any other origin, so another site cannot drive a member's session.
    # Local: loopback only, as before.
    cors_allowed_origins=[_settings.public_url] if not _settings.local_mode and _settings.public_url else ["*"],
)
