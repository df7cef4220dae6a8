"""/docs works offline: every script, style and image its pages load is served by the app itself."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.config import Settings

PAGES = ("/docs", "/docs/swagger")


class _Assets(HTMLParser):
    """The URLs a page loads: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def test_docs_pages_load_only_what_the_app_serves(app_dsn):
    # No API key: /docs and its assets are public.
    with TestClient(create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=2))) as anon:
        for page in PAGES:
            r = anon.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), page
            assert "SwaggerUIBundle(" in r.text
            parser = _Assets()
            parser.feed(r.text)
            assert len(parser.urls) >= 3, parser.urls  # the bundle, the preset, the stylesheet
            for url in parser.urls:
                parts = urlsplit(url)
                assert not parts.scheme and not parts.netloc, f"{page} loads {url} from elsewhere"
                asset = anon.get(urljoin(page, url))
                assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert anon.get("/docs/openapi.json").status_code == 200
        assert anon.get("/docs/assets/no-such-file.js").status_code == 404
