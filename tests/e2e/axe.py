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


def overflowing(page) -> list[str]:
    """Every element drawn past the viewport's left or right edge, however it is clipped: a dialog wider
    than a phone is cut off by its own scroll container, which axe never sees; and every box whose content
    scrolls sideways inside it. Code blocks scroll inside their own box, so what is inside a <pre> is not
    counted; the <pre> itself is."""
    return page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const out = [];
        for (const el of document.querySelectorAll('body *')) {
            const box = el.getBoundingClientRect();
            if (box.width === 0 || box.height === 0 || el.parentElement.closest('pre')) continue;
            const style = getComputedStyle(el);
            if (style.visibility === 'hidden' || style.position === 'fixed' && box.width <= 1) continue;
            const what = (el.getAttribute('aria-label') || el.innerText || '').trim().slice(0, 40);
            if (box.right > width + 1 || box.left < -1) {
                out.push(`<${el.tagName.toLowerCase()}> ${Math.round(box.left)}..${Math.round(box.right)} px: ${what}`);
            } else if (/auto|scroll/.test(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
                // Inside the screen, but its content is wider than it: a table cut at the edge of its card.
                const by = el.scrollWidth - el.clientWidth;
                out.push(`<${el.tagName.toLowerCase()}> scrolls sideways by ${by} px: ${what}`);
            }
        }
        if (document.documentElement.scrollWidth > width) out.unshift(`the page scrolls sideways`);
        return out;
    }""")


def assert_clean(page, where: str) -> None:
    """No serious axe finding, and nothing wider than the viewport."""
    found = violations(page)
    assert not found, f"axe on {where}: " + "; ".join(
        f"{v['impact']} {v['id']} ({v['help']}): {v['nodes']}" for v in found
    )
    wide = overflowing(page)
    assert not wide, f"past the viewport's edge on {where}: " + "; ".join(wide[:8])


if __name__ == "__main__":
    print(ensure())
