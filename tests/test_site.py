"""The course website: builds offline from the committed results, renders in headless Chromium (figures load, equations
render, tables show), and has no dead internal links. Screenshots go to the folder the test prints."""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from conftest import ROOT

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PROFILE = "cpu"  # the committed results
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(ok: bool, why: str):
    "Skip with `why` on a developer machine; in CI the site test must run, so fail instead."
    if not ok:
        (pytest.fail if IN_CI else pytest.skip)(f"{why} (bash tools/setup.sh installs it; CI must have it)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The website built from the repository's results/cpu into a temporary folder: (html folder, book sources)."
    need((ROOT / ".cache" / "site-packages" / "jupyter_book").exists(), "Jupyter Book is not installed in .cache")
    need((ROOT / ".cache" / "mathjax" / "node_modules" / "mathjax" / "es5").exists(), "MathJax 3 is not in .cache")
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_site.py"), "--profile", PROFILE, "--out", str(out)],
                   cwd=ROOT, check=True, timeout=600)
    return out / "_build" / "html", out / "src"


class Links(HTMLParser):
    "Every href/src of a page (skipping the ones with a scheme, and pure #fragments)."

    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value and not urlparse(value).scheme and not value.startswith("#"):
                self.links.append(value)


def test_site_has_every_chapter_and_notebook(site):
    "The book has a page per chapter of params.yaml and per notebook of nbs/, the reproduce page and the API pages."
    from deepgen.report import course_notebooks
    html, _ = site
    course = course_notebooks(ROOT)
    for _, r in course.iterrows():
        assert (html / r["chapter"] / "index.html").exists(), r["chapter"]
        assert (html / r["chapter"] / f"{Path(r['notebook']).stem}.html").exists(), r["notebook"]
    assert (html / "reproduce.html").exists() and (html / "api" / "config.html").exists()
    assert "deepgen.config.start_stage" in (html / "api" / "config.html").read_text()  # autodoc ran
    assert not any("cdn.jsdelivr.net/npm/mathjax" in p.read_text() for p in html.rglob("*.html"))  # local MathJax


def test_no_dead_internal_links(site):
    "Every relative href/src of every built page resolves to a file of the site."
    html, _ = site
    dead = []
    for page in html.rglob("*.html"):
        if page.relative_to(html).parts[0] == "_static":  # the theme's template files, not pages
            continue
        parser = Links()
        parser.feed(page.read_text(errors="replace"))
        base = "/" + page.relative_to(html).as_posix()
        for link in parser.links:
            target = unquote(urlparse(urljoin(base, link)).path).lstrip("/")
            path = html / target
            if not (path.is_file() or (path / "index.html").is_file()):
                dead.append(f"{page.relative_to(html)} -> {link}")
    assert dead == [], f"{len(dead)} dead links, e.g. {dead[:10]}"


@pytest.fixture(scope="module")
def server(site):
    html, _ = site
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    need(CHROMIUM.exists() and CHROMEDRIVER.exists(), "Chromium/ChromeDriver is not installed at /usr/bin")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,2000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = Path(os.environ.get("SITE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nsite screenshots: {folder}")
    return folder


def rendered(driver, url) -> dict:
    "Open `url`, wait for MathJax to finish, and report what a reader would see."
    driver.get(url)
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (!document.querySelector('script[src*=\"tex-chtml\"]')) return done(false);"  # a page with no math
        "const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)"
        "  ? MathJax.startup.promise.then(() => done(true)) : setTimeout(wait, 50);"
        "wait();")
    return driver.execute_script("""
        const main = document.querySelector('main') || document.body;
        const prose = main.cloneNode(true);
        prose.querySelectorAll('pre, code, script').forEach(e => e.remove());
        return {
          images: [...main.querySelectorAll('img')].length,
          broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
          equations: document.querySelectorAll('mjx-container').length,
          math_errors: document.querySelectorAll('mjx-merror').length,
          raw_dollars: (prose.textContent.match(/\\$\\$/g) || []).length,
          tables: main.querySelectorAll('table').length,
          title: document.title,
        };""")


def pages():
    "The home page, the first chapter of params.yaml, and that chapter's first notebook."
    from deepgen.config import read_params
    from deepgen.report import course_notebooks
    chapter = next(iter(read_params(ROOT)["chapters"]))
    course = course_notebooks(ROOT)
    first = Path(course.loc[course["chapter"] == chapter, "notebook"].iloc[0]).stem
    return {"home": "index.html", "chapter": f"{chapter}/index.html", "notebook": f"{chapter}/{first}.html"}


@pytest.mark.parametrize("name", ["home", "chapter", "notebook"])
def test_page_renders_in_chromium(site, server, browser, screenshots, name):
    "Figures load, equations are typeset by the local MathJax (no raw $$ left), tables show; a screenshot is kept."
    page = rendered(browser, f"{server}/{pages()[name]}")
    browser.save_screenshot(str(screenshots / f"{name}.png"))
    assert page["broken"] == [], f"broken images on {name}: {page['broken']}"
    assert page["images"] > 0 and page["tables"] > 0, page
    assert page["raw_dollars"] == 0 and page["math_errors"] == 0, page
    if name == "notebook":
        assert page["equations"] > 0, page


def test_home_page_shows_the_scoreboard_and_chapter_pages_their_claims(tmp_path, monkeypatch):
    "The report's scoreboard is the home page's first result; a stage's claims lead its part of the chapter page."
    import importlib.util
    from deepgen.config import read_params
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
    build_site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_site)
    chapter, stages = next(iter(read_params(ROOT)["chapters"].items()))
    results = tmp_path / "results" / "smoke" / "tables"
    (results / "report").mkdir(parents=True)
    (results / "report" / "scoreboard.md").write_text("### Reproduction scoreboard (smoke)\n\n| chapter | claims |\n"
                                                      "|---|---|\n| all | 7 |\n")
    (results / chapter / stages[0]).mkdir(parents=True)
    (results / chapter / stages[0] / "claims.md").write_text("### Claims tested\n\n| claim | verdict |\n|---|---|\n"
                                                             "| modes-covered | partly |\n")
    (results / chapter / stages[0] / "other.md").write_text("### Another table\n\n| a |\n|---|\n| 1 |\n")
    monkeypatch.setenv("DEEPGEN_RESULTS", str(tmp_path / "results"))
    src = build_site.generate("smoke", tmp_path / "site")
    home = (src / "index.md").read_text()
    assert "## Reproduction scoreboard" in home and home.index("| all | 7 |") < home.index("## The course map")
    assert "### Reproduction scoreboard (smoke)" not in home  # the table's own title is left out under the heading
    page = (src / chapter / "index.md").read_text()
    assert "### Claims" in page and page.index("| modes-covered | partly |") < page.index("#### Another table")
