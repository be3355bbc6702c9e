"""axe-core in the browser tests: installed once from npm into .tools/axe (ignored by git), injected with Playwright.

.venv/bin/python tests/e2e/axe.py     # what .ci/setup --test runs; the tests call ensure() too
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AXE_VERSION = "4.11.1"
PREFIX = ROOT / ".tools" / "axe"
SCRIPT = PREFIX / "node_modules" / "axe-core" / "axe.min.js"
# What fails a test: WCAG's serious and critical findings.
FAILING = ("critical", "serious")


def ensure() -> Path:
    if not SCRIPT.exists():
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(PREFIX),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            timeout=300,
        )
    return SCRIPT


def violations(page) -> list[dict]:
    """Serious and critical axe findings on the page as it is now (open dialogs included)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(ensure()))
    # The page at rest: the pointer off every control, so a button's hover colour is not what is measured.
    page.mouse.move(0, 0)
    found = page.evaluate("""async () => {
        // A dialog fading in or out is half transparent and half focus-trapped: check what stays on screen.
        await Promise.all(document.getAnimations()
            .filter(a => a.effect && a.effect.getTiming().iterations !== Infinity)
            .map(a => a.finished.catch(() => null)));
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
    }""")
    return [v for v in found if v["impact"] in FAILING]


def assert_clean(page, where: str) -> None:
    found = violations(page)
    assert not found, f"axe on {where}: " + "; ".join(
        f"{v['impact']} {v['id']} ({v['help']}): {v['nodes']}" for v in found
    )


if __name__ == "__main__":
    print(ensure())
