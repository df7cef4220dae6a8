"""Every runnable block in docs/ runs, or says why it cannot (see docs_runner for the rules).

Each page gets a fresh migrated database with a keyring of its own and, if it has runnable
sh blocks, a real API server over that database; its blocks then run in document order.
"""

from __future__ import annotations

import re

import pytest

from docs_runner import (
    DISPLAY,
    DOCS,
    ROOT,
    RUNNABLE,
    api_server,
    blocks,
    own_keyring,
    pages,
    run_sh,
    run_sql,
    shell_env,
)

LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runnable_pages() -> list[str]:
    return [str(p.relative_to(DOCS)) for p in pages() if any(b.runs for b in blocks(p))]


def test_docs_exist():
    assert (DOCS / "README.md").exists() and len(pages()) > 5


@pytest.mark.parametrize("page", [str(p.relative_to(DOCS)) for p in pages()])
def test_every_block_is_classified(page):
    """A block is runnable (sql, sh) or shown (text, json, ...); markers carry a reason and sit on runnable blocks."""
    for b in blocks(DOCS / page):
        assert b.lang in RUNNABLE | DISPLAY, (
            f"{b.where}: code block language {b.lang!r}: use sql or sh (run by the tests), or one of {sorted(DISPLAY)}"
        )
        if b.marker:
            assert b.reason, f"{b.where}: <!-- {b.marker}: ... --> needs its reason"
            assert b.lang in RUNNABLE, f"{b.where}: a {b.marker} marker on a {b.lang} block, which never runs"
        if b.marker == "expect-errors":
            assert b.lang == "sql", f"{b.where}: expect-errors is for sql blocks"


@pytest.mark.parametrize("page", [str(p.relative_to(DOCS)) for p in pages()] + ["../README.md"])
def test_relative_links_resolve(page):
    """Links to other files of the repository exist, and links into errors.md name an error's anchor."""
    path = (DOCS / page).resolve()
    errors = (DOCS / "errors.md").read_text() if (DOCS / "errors.md").exists() else ""
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', errors))
    anchors |= {slug(h) for h in re.findall(r"^#{1,6} (.+)$", errors, re.M)}
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve()
        assert resolved.exists(), f"{path.relative_to(ROOT)}: broken link {target}"
        if resolved.name == "errors.md" and anchor:
            assert anchor in anchors, f"{path.relative_to(ROOT)}: no error anchor #{anchor} in docs/errors.md"


@pytest.mark.parametrize("page", _runnable_pages())
def test_page_blocks_run(page, dsn, tmp_path):
    page_blocks = [b for b in blocks(DOCS / page) if b.runs]
    variables: dict[str, str] = {}
    with own_keyring(dsn):
        if any(b.lang == "sh" for b in page_blocks):
            with api_server(dsn.replace("postgres@", "shieldx_app@", 1), tmp_path / "api.log") as api:
                env = shell_env(api, dsn)
                for b in page_blocks:
                    if b.lang == "sql":
                        variables = run_sql(b, dsn, tmp_path, variables)
                    else:
                        env = run_sh(b, env, tmp_path)
        else:
            for b in page_blocks:
                variables = run_sql(b, dsn, tmp_path, variables)
