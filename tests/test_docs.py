"""The documentation site: it builds with warnings as errors, its examples run, and a browser shows rendered formulas."""

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
#: Where the browser's screenshot of an algorithm page is kept for a reader of the test run.
ARTIFACTS = REPO / "test-artifacts"
#: Env steps a page example trains for in the test (the pages show realistic budgets).
EXAMPLE_STEPS = 300
PAGES_WITH_EXAMPLES = [*sorted((DOCS / "algorithms").glob("[a-z]*.rst")), DOCS / "index.rst", DOCS / "guide" / "install.rst"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:return: The folder of the site, built as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


def python_blocks(page: Path) -> Iterator[str]:
    """:return: The page's ``.. code-block:: python`` blocks, dedented."""
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", page.read_text(), flags=re.M):
        yield "\n".join(line[3:] for line in match.group(1).splitlines())


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda page: page.stem)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = list(python_blocks(page))
    assert blocks, f"{page} has no python example"
    monkeypatch.chdir(tmp_path)
    for base in (OnPolicyAlgorithm, OffPolicyAlgorithm):
        learn = base.learn

        def capped(self: Any, total_timesteps: int, *args: Any, _learn: Any = learn, **kwargs: Any) -> Any:
            return _learn(self, min(total_timesteps, EXAMPLE_STEPS), *args, **kwargs)

        monkeypatch.setattr(base, "learn", capped)
    for block in blocks:
        exec(compile(block, str(page), "exec"), {"__name__": "__example__"})


class VisibleText(HTMLParser):
    """The text a reader sees: everything outside ``script`` and ``style`` elements."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden_depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden_depth += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.hidden_depth -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.parts.append(data)


def chromium(*args: str) -> str:
    """:return: The stdout of headless Chromium run with ``args``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "headless Chromium is needed: apt-get install chromium"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def test_algorithm_page_formulas_render_offline(site: Path) -> None:
    page = site / "algorithms" / "reinforce.html"
    source = page.read_text()
    # The formulas are in the page as TeX, and the math renderer is bundled with the site, not fetched from a CDN.
    assert r"\nabla_\theta" in source and "mathjax/tex-chtml.js" in source and "https://" not in source.split("<body")[0]
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()

    dom = chromium("--dump-dom", page.as_uri())
    text = VisibleText()
    text.feed(dom)
    visible = "".join(text.parts)
    # Every formula of the page became a MathJax element.
    assert dom.count("<mjx-container") == source.count('class="math notranslate nohighlight"') >= 4
    for raw in (r"\frac", r"\nabla", r"\sum", "$"):
        assert raw not in visible, f"unrendered {raw!r} in the visible text"

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "docs_reinforce.png"
    screenshot.unlink(missing_ok=True)
    chromium("--hide-scrollbars", "--window-size=1280,1800", f"--screenshot={screenshot}", page.as_uri())
    assert screenshot.read_bytes().startswith(b"\x89PNG")
