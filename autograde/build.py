"""`course build`: figures, student notebooks, then the site in both languages.

    build(root)  ->  root/site/en, root/site/ko and root/site/index.html

Each language is a separate MkDocs build of site-config/<lang>.yml, which
inherits the shared mkdocs.yml (docs_dir course/<lang>, theme.language <lang>).
Builds run strict: a broken link, a missing anchor or snippet is an error.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from autograde.errors import CourseError

LANGUAGES = ("en", "ko")

# The style of the two pages outside the languages' own sites (the chooser and the
# root 404 page): no stylesheet or font to fetch, and the reader's dark mode.
ROOT_PAGE_STYLE = """<style>
body { font: 1.1rem/1.6 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 34rem;
       margin: 3rem auto; padding: 0 1rem; color: #222; background: #fff; }
h1 { font-size: 1.5rem; line-height: 1.3; }
ul { list-style: none; padding: 0; display: flex; gap: 1rem; flex-wrap: wrap; }
a { display: inline-block; padding: .4rem 1rem; border: 1px solid #3f51b5; border-radius: .3rem;
    color: #3f51b5; text-decoration: none; }
a[aria-current] { background: #3f51b5; color: #fff; }
@media (prefers-color-scheme: dark) {
  body { color: #e2e4e9; background: #1e2129; }
  a { color: #8c9eff; border-color: #8c9eff; }
  a[aria-current] { background: #8c9eff; color: #1e2129; }
}
</style>"""

# Both pages pick the language the same way: the first of the browser's preferred
# languages that is Korean or English; English otherwise.
PICK_LANGUAGE = """function pickLanguage(tags) {
  for (var i = 0; i < tags.length; i++) {
    var primary = String(tags[i]).toLowerCase().split(/[-_;]/)[0];
    if (primary === "ko" || primary === "en") return primary;
  }
  return "en";
}
function browserLanguage() {
  return pickLanguage(navigator.languages && navigator.languages.length ? navigator.languages
                                                                        : [navigator.language || "en"]);
}"""

# The root page: picks the course language, says which it opens, and goes there.
# Without JavaScript it shows both links and goes to English.
CHOOSER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LLMs from the token up · 토큰부터 시작하는 LLM</title>
<link rel="alternate" hreflang="en" href="en/index.html">
<link rel="alternate" hreflang="ko" href="ko/index.html">
<link rel="icon" href="en/assets/images/favicon.png">
<noscript><meta http-equiv="refresh" content="3; url=en/index.html"></noscript>
""" + ROOT_PAGE_STYLE + """
</head><body>
<h1>LLMs from the token up<br><span lang="ko">토큰부터 시작하는 LLM</span></h1>
<p id="choice">Choose a language · <span lang="ko">언어를 고르세요</span></p>
<ul>
<li><a id="to-en" href="en/index.html" hreflang="en">English</a></li>
<li><a id="to-ko" href="ko/index.html" hreflang="ko" lang="ko">한국어</a></li>
</ul>
<script>
""" + PICK_LANGUAGE + """
(function () {
  var lang = browserLanguage();
  var choice = document.getElementById("choice");
  choice.lang = lang;
  choice.textContent = lang === "ko" ? "브라우저 언어 설정에 맞춰 한국어 강좌를 엽니다."
                                     : "Opening the English course, following your browser's language.";
  document.getElementById("to-" + lang).setAttribute("aria-current", "true");
  document.documentElement.lang = lang;
  location.replace(lang + "/index.html");
})();
</script>
</body></html>
"""

# The site's own 404 page, which a host such as GitHub Pages serves for a missing
# address at any depth: so its links are absolute. The site's path comes from the
# address itself (what precedes /en/ or /ko/), else from the repository setting
# (GitHub Pages serves OWNER/NAME at /NAME/). The address's language, else the
# browser's, says the message first.
NOT_FOUND = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Page not found · 페이지를 찾을 수 없습니다</title>
<link rel="icon" href="data:,">
""" + ROOT_PAGE_STYLE + """
</head><body>
<h1 id="title">Page not found<br><span lang="ko">페이지를 찾을 수 없습니다</span></h1>
<p id="say">There is no page at this address. · <span lang="ko">이 주소에는 페이지가 없습니다.</span></p>
<ul>
<li><a id="to-en" href="@BASE@en/index.html" hreflang="en">LLMs from the token up (English)</a></li>
<li><a id="to-ko" href="@BASE@ko/index.html" hreflang="ko" lang="ko">토큰부터 시작하는 LLM (한국어)</a></li>
</ul>
<script>
""" + PICK_LANGUAGE + """
(function () {
  var found = location.pathname.match(/^(.*?\\/)(en|ko)(\\/|$)/);
  var base = found ? found[1] : "@BASE@";
  var lang = found ? found[2] : browserLanguage();
  document.getElementById("to-en").href = base + "en/index.html";
  document.getElementById("to-ko").href = base + "ko/index.html";
  document.getElementById("to-" + lang).setAttribute("aria-current", "true");
  document.documentElement.lang = lang;
  document.getElementById("title").textContent = lang === "ko" ? "페이지를 찾을 수 없습니다" : "Page not found";
  var say = document.getElementById("say");
  say.lang = lang;
  say.textContent = lang === "ko" ? "이 주소에는 페이지가 없습니다. 강좌의 첫 페이지로 가세요."
                                  : "There is no page at this address. Go to the course's home page.";
})();
</script>
</body></html>
"""


def not_found_page(root: Path) -> str:
    """The root 404 page, its fallback links under the site's path on GitHub Pages."""
    from autograde.repository import settings

    return NOT_FOUND.replace("@BASE@", settings(root).pages_path)


def build(root, skip_figures: bool = False, skip_notebooks: bool = False, site_dir=None) -> Path:
    """Build the whole course site under `site_dir` (default root/site); return it."""
    root = Path(root).resolve()
    site = Path(site_dir).resolve() if site_dir else root / "site"
    warn_placeholder(root)

    if skip_figures:
        missing = [f"course/{lang}/figures" for lang in LANGUAGES
                   if not any((root / "course" / lang / "figures").glob("*.png"))]
        if missing:
            raise CourseError(f"--skip-figures, but there are no figures in {' and '.join(missing)}; "
                              "run `course figures` or build without --skip-figures")
    else:
        from autograde.figures import make_all

        make_all(root / "course")  # writes course/<lang>/figures/

    if not skip_notebooks:
        try:
            from autograde.notebooks import build_all
        except ModuleNotFoundError as exc:
            if exc.name != "autograde.notebooks":
                raise
            print("note: autograde.notebooks does not exist yet; student notebooks not generated")
        else:
            build_all(root)

    from autograde.site.notebook_pages import write_pages

    write_pages(root)  # course/<lang>/notebooks/*.md from the committed exercises

    site.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        start = time.perf_counter()
        build_language(root, lang, site / lang)
        print(f"site/{lang}: built in {time.perf_counter() - start:.1f} s")
    (site / "index.html").write_text(CHOOSER, encoding="utf-8")
    (site / "404.html").write_text(not_found_page(root), encoding="utf-8")
    warn_placeholder(root)                  # again at the end, where the build's output stops
    return site


def warn_placeholder(root: Path) -> None:
    """Say loudly, on stderr, when the links and install cells point to the original project."""
    from autograde.repository import placeholder_warning, settings

    note = placeholder_warning(settings(root))
    if note:
        print(note, file=sys.stderr, flush=True)


def build_language(root: Path, lang: str, out: Path) -> None:
    """One strict MkDocs build of site-config/<lang>.yml into `out`."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort, ConfigurationError
    from pymdownx.snippets import SnippetMissingError

    # MkDocs reports problems through logging; print them and keep the warnings
    # for the error message (the `mkdocs` command line does this for itself).
    warnings: list[str] = []
    handler = _Collect(warnings, lang)
    logger = logging.getLogger("mkdocs")
    logger.addHandler(handler)
    try:
        config = load_config(str(root / "site-config" / f"{lang}.yml"), site_dir=str(out), strict=True)
        config.plugins.on_startup(command="build", dirty=False)
        try:
            mkdocs_build(config)
        finally:
            config.plugins.on_shutdown()
    except (Abort, ConfigurationError, SnippetMissingError) as exc:
        detail = "".join(f"\n  {w}" for w in warnings)
        raise CourseError(f"the {lang} site did not build: {exc}{detail}") from None
    finally:
        logger.removeHandler(handler)


class _Collect(logging.Handler):
    """Print MkDocs warnings and errors to stderr and remember them."""

    def __init__(self, sink: list[str], lang: str):
        super().__init__(logging.WARNING)
        self.sink, self.lang = sink, lang

    def emit(self, record):
        msg = f"{record.levelname} [{self.lang}] {record.getMessage()}"
        self.sink.append(msg)
        print(msg, file=sys.stderr)
