"""The course site read offline and on a phone (issue 12): notebooks ship inside
the site, figures and diagrams stay readable at 390 px, the root page follows
the browser's language, and no page logs a console error over http or file://.

The readability criterion for figures: figures.py records, per figure, the size
of its smallest text in image pixels (smallest font in points x dpi / 72). An
image shown `w` CSS px wide whose file is `n` px wide shows that text at
`size * w / n` CSS px; at a 390 px wide viewport this must be at least 12 px.
For mermaid diagrams the same holds with the SVG's computed font sizes and its
viewBox width (diagrams wider than the screen scroll in their box at natural size).
Also here (issue 21): the 404 pages, the download button from file:// in a
reader's Chromium, Korean line breaks and the dark figures. The site, browser and server fixtures come from tests/test_site.py.
"""
from __future__ import annotations

import functools
import json
import re
import tempfile
from pathlib import Path

import pytest

from test_site import (COURSE, LANGS, ROOT, browser, mkdocs_config, pages, reader_browser,  # noqa: F401  (fixtures)
                       server, site)

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
MIN_TEXT_PX = 12
MAX_DIAGRAM_HEIGHT_PX = 1000   # at 390 px: about one phone screen (844 px) and a bit


def site_pages(lang: str) -> list[str]:
    return [p.replace(".md", ".html") for p in pages(lang)]


# ----------------------------------------------------------------------------
# notebooks inside the site


def test_every_student_notebook_ships_in_both_languages(site):
    import nbformat

    for lang in LANGS:
        sources = sorted((ROOT / "exercises" / lang).glob("*/*.ipynb"))
        assert sources, lang
        for src in sources:
            copy = site / lang / "notebooks" / src.name
            assert copy.read_bytes() == src.read_bytes(), copy
            nbformat.validate(nbformat.reads(copy.read_text(encoding="utf-8"), as_version=4))


def test_every_download_button_resolves_inside_the_site(site):
    found = 0
    for lang in LANGS:
        for page in site_pages(lang):
            html = (site / lang / page).read_text(encoding="utf-8")
            for href in re.findall(r'class="md-button nb-download" href="([^"]+)"', html):
                assert not re.match(r"^[a-z]+:|^/", href), f"{lang}/{page}: {href} is not relative"
                target = ((site / lang / page).parent / href).resolve()
                assert target.is_relative_to((site / lang).resolve()) and target.is_file(), (page, href)
                found += 1
            # the same notebook as a script for the button from file://: the exact text
            for name, script in re.findall(r'data-notebook="([^"]+)" data-notebook-script="([^"]+)"', html):
                js = ((site / lang / page).parent / script).read_text(encoding="utf-8")
                call = re.fullmatch(r'courseNotebook\(("[^"]+"), (".*")\);\n', js, re.S)
                assert call and json.loads(call.group(1)) == name, (page, script)
                assert json.loads(call.group(2)) == (site / lang / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")
    assert found >= 2 * 8   # 4 chapters + 4 notebook pages, both languages


def test_a_page_naming_a_missing_notebook_fails_the_build(tmp_path):
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import Files

    from autograde.site import hooks

    class Page:
        meta = {"notebook": "99_missing"}
        file = type("F", (), {"src_uri": "chapters/x.md", "dest_uri": "chapters/x.html"})()

    config = type("C", (), {"theme": {"language": "en"}, "extra": {"repository": "a/b", "default_branch": "main"}})()
    with pytest.raises(PluginError, match="99_missing"):
        hooks.on_page_markdown("# Title\n", Page(), config, Files([]))


# ----------------------------------------------------------------------------
# pages: site name, head links, headings


def test_korean_pages_carry_the_korean_site_name(site):
    ko_name = mkdocs_config("ko")["site_name"]
    assert re.search(r"[가-힣]", ko_name) and mkdocs_config("en")["site_name"] != ko_name
    for lang in LANGS:
        html = (site / lang / "chapters" / "03-attention.html").read_text(encoding="utf-8")
        topic = re.search(r'<span class="md-ellipsis">\s*(.*?)\s*</span>', html, re.S).group(1)
        assert (topic == ko_name) == (lang == "ko"), (lang, topic)


def test_no_head_link_makes_material_fetch_a_sitemap(site):
    # Material fetches sitemap.xml next to every <link rel="alternate"> in the head
    bundle = next((site / "en" / "assets" / "javascripts").glob("bundle.*.min.js")).read_text(encoding="utf-8")
    assert "link[rel=alternate]" in bundle   # still how Material finds them: the rule below matters
    for lang in LANGS:
        for page in site_pages(lang):
            head = (site / lang / page).read_text(encoding="utf-8").split("</head>")[0]
            assert not re.search(r'<link rel="alternate"[^>]*hreflang', head), f"{lang}/{page}"


def test_headings_show_no_raw_identifiers(site):
    """`d_k` in a heading is written as math (rendered by KaTeX), never as raw text."""
    for lang in LANGS:
        for page in site_pages(lang):
            html = (site / lang / page).read_text(encoding="utf-8")
            for heading in re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", html, re.S):
                text = re.sub(r'<span class="arithmatex">.*?</span>|<code>.*?</code>|<[^>]+>', "", heading)
                assert not re.search(r"\b[A-Za-z]_[A-Za-z0-9]", text), f"{lang}/{page}: {heading}"


# ----------------------------------------------------------------------------
# figures and diagrams, static side

MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```$", re.M | re.S)


def mermaid_blocks(path: Path) -> list[str]:
    return MERMAID_BLOCK.findall(path.read_text(encoding="utf-8"))


def diagram_shape(block: str) -> str:
    """A diagram without its words: node ids, arrows and layout keywords only."""
    block = re.sub(r'"[^"]*"', '""', block)                  # labels
    block = re.sub(r"\|[^|]*\|", "||", block)                # edge labels
    block = re.sub(r"^(\s*\S+\s*-[->.]+>?>?\s*\S+\s*):.*$", r"\1:", block, flags=re.M)  # sequence messages
    block = re.sub(r"^(\s*participant \w+) as .*$", r"\1", block, flags=re.M)
    block = re.sub(r"^(\s*(?:loop|alt|else|opt|par|and|critical|break))\b.*$", r"\1", block, flags=re.M)
    block = re.sub(r"^(\s*[Nn]ote [^:]*):.*$", r"\1:", block, flags=re.M)
    return block


def test_diagrams_are_top_down_and_alike_in_both_languages():
    for page in pages("en"):
        en, ko = (mermaid_blocks(COURSE / lang / page) for lang in LANGS)
        assert [diagram_shape(b) for b in en] == [diagram_shape(b) for b in ko], page
        for block in en + ko:
            kind = block.split()[0]
            assert kind in ("sequenceDiagram", "flowchart", "graph"), (page, kind)
            if kind != "sequenceDiagram":
                assert re.match(r"(flowchart|graph) (TD|TB)\b", block), (page, block.splitlines()[0])
                assert not re.search(r"direction (LR|RL)", block), page
                nodes = set(re.findall(r"\b([A-Za-z]\w*)(?:\[|\(|\{)", block))
                assert len(nodes) <= 14, f"{page}: {len(nodes)} nodes; split the diagram"


def test_figures_are_recorded_with_their_text_size(site):  # site: figures made if missing
    from autograde.figures import FIGURE_DPI, FIGURE_WIDTH_IN, MIN_FONT_PT, SIDECAR
    from autograde.site.hooks import png_size

    for lang in LANGS:
        folder = COURSE / lang / "figures"
        record = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
        assert set(record) == {p.name for p in folder.glob("*.png")}
        for name, info in record.items():
            width, _ = png_size(folder / name)
            assert info["dpi"] == FIGURE_DPI and info["min_font_pt"] >= MIN_FONT_PT
            assert width / FIGURE_DPI <= FIGURE_WIDTH_IN + 0.25, f"{lang}/{name}: {width / FIGURE_DPI:.2f} in"


def test_save_refuses_small_text_and_wide_figures(tmp_path):
    from autograde import figures
    from autograde.errors import CourseError

    plt = figures._pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xlabel("tiny", fontsize=figures.MIN_FONT_PT - 4)
    with pytest.raises(CourseError, match="tiny"):
        figures._save(fig, tmp_path / "small.png")
    fig, ax = plt.subplots(figsize=(figures.FIGURE_WIDTH_IN + 3, 3))
    with pytest.raises(CourseError, match="wide"):
        figures._save(fig, tmp_path / "wide.png")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("fine")
    figures._save(fig, tmp_path / "ok.png")
    assert json.loads((tmp_path / figures.SIDECAR).read_text())["ok.png"]["min_font_pt"] >= figures.MIN_FONT_PT
    assert not (tmp_path / "small.png").exists()


def test_dark_twin_turns_lightness_over_and_keeps_hues(tmp_path):
    import numpy as np
    from PIL import Image

    from autograde import figures

    pixels = [(255, 255, 255), (0, 0, 0), (8, 48, 107), (204, 204, 204), (214, 39, 40)]
    Image.fromarray(np.array([pixels], dtype=np.uint8), "RGB").save(tmp_path / "x.png")
    out = figures.dark_variant(tmp_path / "x.png")
    assert out == tmp_path / f"x{figures.DARK_SUFFIX}.png"
    white, black, dark_blue, pale_grey, red = (tuple(int(v) for v in p)
                                               for p in np.asarray(Image.open(out).convert("RGB"))[0])
    assert white == figures.DARK_BACKGROUND and black == figures.DARK_FOREGROUND
    assert dark_blue[2] > max(dark_blue[:2]) and sum(dark_blue) > sum(pixels[2])   # a lighter blue
    assert max(abs(a - b) for a, b in zip(pale_grey, figures.DARK_BACKGROUND)) < 50   # a dim grey
    assert red[0] > max(red[1:]) + 100                                               # still red


def drawn_texts(draw, *args) -> list[tuple[str, float]]:
    """(text, rotation) of every text a figures.py function draws, caught just before saving."""
    from autograde import figures

    plt = figures._pyplot()
    seen = []
    original = figures._save
    try:
        figures._save = lambda fig, path: seen.extend(
            (t.get_text(), t.get_rotation()) for t in figures.figure_texts(fig)) or path
        draw(plt, *args, Path("unused.png"))
    finally:
        figures._save = original
        plt.close("all")
    return seen


def test_korean_temperature_figure_has_korean_axis_labels():
    from autograde import figures

    texts = [t for t, _ in drawn_texts(figures.fig_softmax_temperature, "ko")]
    assert figures.LABELS["ko"]["logit"] in texts and re.search(r"[가-힣]", figures.LABELS["ko"]["logit"])
    assert "logit" not in texts


@pytest.mark.parametrize("lang", LANGS)
def test_heatmap_labels_both_axes_and_top_k_tokens_read_horizontally(lang):
    from autograde import figures
    from autograde.reference.checkpoint import load_reference

    ref = load_reference()
    texts = [t for t, _ in drawn_texts(figures.fig_attention, ref, lang)]
    assert figures.LABELS[lang]["key"] in texts and figures.LABELS[lang]["query"] in texts
    tokens = [figures.token_label(ref.tokenizer, i) for i in ref.tokenizer.encode(figures.SENTENCE_BAE)]
    assert all(tok in texts for tok in tokens)
    rotated = [t for t, angle in drawn_texts(figures.fig_top_k_top_p, ref, lang) if angle != 0]
    assert rotated == []   # every text of the top-k/top-p figure reads horizontally


def test_figure_images_carry_their_css_size(site):
    from autograde.figures import FIGURE_DPI
    from autograde.site.hooks import png_size

    seen = 0
    for lang in LANGS:
        for page in site_pages(lang):
            html = (site / lang / page).read_text(encoding="utf-8")
            tags = re.findall(r'<img\b[^>]*src="[^"]*figures/[^"]+"[^>]*>', html)
            # every figure twice: the light image and its dark twin, one per colour scheme
            light = [t for t in tags if '.png#only-light"' in t]
            assert len(light) * 2 == len(tags) == 2 * sum('-dark.png#only-dark"' in t for t in tags), page
            for tag in tags:
                src = re.search(r'src="([^"#]+)', tag).group(1)
                w, _ = png_size((site / lang / page).parent / src)
                assert f'width="{round(w * 96 / FIGURE_DPI)}"' in tag, (page, tag)
                seen += 1
    assert seen >= 2 * 6


# ----------------------------------------------------------------------------
# in the browser


def console_errors(drv) -> list[str]:
    return [f"{e['level']}: {e['message']}" for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def settle(drv) -> None:
    """Wait until the page has loaded and rendered its math and diagrams."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && !document.querySelector('pre.mermaid')"))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "file"])
def test_no_console_errors_on_any_page(browser, server, site, scheme):
    """Every page over http; over file:// every chapter (the pages with widgets, figures, math and
    diagrams), the home page and one notebook page: the other pages are the same templates."""
    base = server if scheme == "http" else site.as_uri()
    console_errors(browser)  # drop what earlier tests left
    problems = []
    for lang in LANGS:
        every = site_pages(lang)
        shown = every if scheme == "http" else [p for p in every if p.startswith("chapters/")] + \
            ["index.html", next(p for p in every if p.startswith("notebooks/"))]
        for page in shown:
            browser.get(f"{base}/{lang}/{page}")
            settle(browser)
            problems += [f"{lang}/{page}: {e}" for e in console_errors(browser)]
    browser.get(f"{base}/index.html")   # the language chooser, then where it leads
    settle(browser)
    browser.get(f"{base}/en/index.html")
    settle(browser)
    problems += [f"(root) {e}" for e in console_errors(browser)]
    assert problems == []


@pytest.mark.browser
def test_console_check_sees_a_failed_request(browser, server):
    """The console test above can fail: a request for a missing sitemap.xml shows up."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/en/chapters/01-tokens.html")
    settle(browser)
    console_errors(browser)
    browser.execute_async_script("const done = arguments[0]; fetch('sitemap.xml').then(done, done)")
    WebDriverWait(browser, 30).until(lambda d: any("sitemap.xml" in e for e in console_errors(d)))


def download_dir(browser) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="course-dl-"))
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    return folder


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "file"])
def test_download_button_saves_the_notebook_offline(reader_browser, server, site, scheme):
    """In Chromium as a reader runs it (no --allow-file-access-from-files), the
    button saves the notebook, also from file://, where a plain download link
    would open the JSON instead (checked first, so the test can tell)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = reader_browser
    base = server if scheme == "http" else site.as_uri()
    folder = download_dir(browser)
    try:
        if scheme == "file":   # the bug the button works around: a plain link opens the file
            browser.get(f"{base}/en/chapters/03-attention.html")
            settle(browser)
            browser.execute_script(
                "const a = document.createElement('a'); a.href = '../notebooks/03_attention.ipynb';"
                "a.download = '03_attention.ipynb'; document.body.append(a); a.click();")
            WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("03_attention.ipynb"))
        for lang in LANGS:
            browser.get(f"{base}/{lang}/chapters/03-attention.html")
            settle(browser)
            start = browser.current_url
            browser.find_element(By.CSS_SELECTOR, "a.nb-download").click()
            saved = folder / "03_attention.ipynb"
            WebDriverWait(browser, 60).until(lambda d: saved.is_file() and not list(folder.glob("*.crdownload")))
            assert saved.read_bytes() == (ROOT / "exercises" / lang / "03_attention" / "03_attention.ipynb").read_bytes()
            assert browser.current_url == start   # the page stays; no error page
            saved.unlink()
        assert console_errors(browser) == []
    finally:
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "default"})
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def phone(browser):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    # Material draws diagrams in a closed shadow root; open it so the test can measure them
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "const attach = Element.prototype.attachShadow;"
        "Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: 'open'}); };")})
    yield browser
    browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


FIGURE_MEASURE = """
return [...document.querySelectorAll('img[src*="figures/"]')].filter(img => img.checkVisibility()).map(img => ({
  src: img.getAttribute('src'), natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
  right: img.getBoundingClientRect().right, viewport: document.documentElement.clientWidth}));
"""

DIAGRAM_MEASURE = """
return [...document.querySelectorAll('div.mermaid')].map(host => {
  const svg = host.shadowRoot && host.shadowRoot.querySelector('svg');
  if (!svg) return null;
  const box = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
  const scale = vb && vb.width ? box.width / vb.width : 1;
  const sizes = [...svg.querySelectorAll('text, tspan, foreignObject div, foreignObject span')]
    .filter(el => el.textContent.trim())
    .map(el => parseFloat(getComputedStyle(el).fontSize));
  return {minFont: Math.min(...sizes) * scale, height: box.height, right: box.right,
          viewport: document.documentElement.clientWidth, texts: sizes.length};
});
"""


@pytest.mark.browser
@pytest.mark.slow
def test_figure_text_is_readable_on_a_phone(phone, server, site):
    record = {lang: json.loads((COURSE / lang / "figures" / "figures.json").read_text(encoding="utf-8"))
              for lang in LANGS}
    seen = 0
    for lang in LANGS:
        for page in site_pages(lang):
            if "figures/" not in (site / lang / page).read_text(encoding="utf-8"):
                continue
            phone.get(f"{server}/{lang}/{page}")
            settle(phone)
            for img in phone.execute_script(FIGURE_MEASURE):
                assert img["natural"] > 0, f"{lang}/{page}: {img['src']} did not load"
                text_px = record[lang][Path(img["src"].split("#")[0]).name]["min_text_px"] * img["shown"] / img["natural"]
                assert text_px >= MIN_TEXT_PX, f"{lang}/{page}: {img['src']} text {text_px:.1f} px"
                assert img["right"] <= img["viewport"] + 0.5, f"{lang}/{page}: {img['src']} overflows"
                seen += 1
    assert seen >= 2 * 6


@pytest.mark.browser
@pytest.mark.slow
def test_diagrams_fit_a_phone(phone, server, site):
    seen = 0
    for lang in LANGS:
        for page in site_pages(lang):
            if 'class="mermaid"' not in (site / lang / page).read_text(encoding="utf-8"):
                continue
            phone.get(f"{server}/{lang}/{page}")
            settle(phone)
            for i, d in enumerate(phone.execute_script(DIAGRAM_MEASURE)):
                where = f"{lang}/{page} diagram {i + 1}"
                assert d and d["texts"], f"{where}: not rendered"
                assert d["minFont"] >= MIN_TEXT_PX, f"{where}: text {d['minFont']:.1f} px"
                assert d["height"] <= MAX_DIAGRAM_HEIGHT_PX, f"{where}: {d['height']:.0f} px tall"
                seen += 1
            # a diagram wider than the screen scrolls in its own box, not the page
            assert phone.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"], page
    assert seen >= 2 * 10


@pytest.mark.browser
@pytest.mark.slow
def test_figures_open_in_a_lightbox_offline(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    console_errors(browser)
    browser.get((site / "ko" / "chapters" / "03-attention.html").as_uri())
    settle(browser)
    link = browser.find_element(By.CSS_SELECTOR, 'a.glightbox[href*="figures/attention-heatmap.png"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const img = document.querySelector('.glightbox-container .gslide.current img');"
        "return img && img.complete && img.naturalWidth > 0"))
    assert console_errors(browser) == []


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("languages,expected", [
    ("ko-KR,ko,en-US", "ko"), ("ko", "ko"), ("en-US,en", "en"), ("fr-FR,ko", "ko"),
    ("fr-FR,de", "en"), ("de,en-GB,ko", "en"),
])
def test_root_page_opens_the_browsers_language(browser, site, languages, expected):
    from selenium.webdriver.support.ui import WebDriverWait

    agent = browser.execute_script("return navigator.userAgent")
    browser.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": languages})
    try:
        root = (site / "index.html").as_uri()
        browser.get(root)
        WebDriverWait(browser, 30).until(lambda d: d.current_url != root)
        assert browser.current_url == (site / expected / "index.html").as_uri()
    finally:
        browser.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": ""})


def test_root_page_names_both_languages_and_works_without_script(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="en/index.html"' in html and 'href="ko/index.html"' in html
    assert "navigator.languages" in html
    assert re.search(r'<noscript><meta http-equiv="refresh" content="\d+; url=en/index.html"></noscript>', html)


# ----------------------------------------------------------------------------
# issue 21: 404 pages, Korean line breaks, dark figures, the wide sidebar


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "file"])
def test_404_pages_are_styled_without_console_errors(browser, server, site, scheme):
    base = server if scheme == "http" else site.as_uri()
    console_errors(browser)
    for lang, other in (("en", "ko"), ("ko", "en")):
        browser.get(f"{base}/{lang}/404.html")
        settle(browser)
        assert console_errors(browser) == [], lang
        # Material's stylesheet applies (an unstyled page has a static header) and its script ran
        assert browser.execute_script(
            "return getComputedStyle(document.querySelector('.md-header')).position") == "sticky", lang
        assert browser.execute_script("return typeof document$") != "undefined", lang
        link = browser.execute_script(
            f"return document.querySelector('a.md-select__link[hreflang=\"{other}\"]').href")
        assert link == f"{base}/{other}/index.html", lang


# Every Hangul word in the headings and the sidebar's links: the distinct line
# boxes (tops of its client rects) it spans. A word on two lines is split.
SPLIT_WORDS = """
const split = [];
for (const el of document.querySelectorAll(arguments[0])) {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) {
    for (const m of node.data.matchAll(/[\\uac00-\\ud7a3]+/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) split.push(m[0] + ' in ' + el.textContent.trim().slice(0, 40));
    }
  }
}
return split;
"""
KOREAN_TEXT = "h1, h2, h3, .md-nav--primary .md-nav__link, .md-typeset p, .md-typeset p a"


@pytest.mark.browser
@pytest.mark.slow
def test_korean_words_are_not_split_across_lines_on_a_phone(phone, server, site):
    pages_ko = ["index.html", "chapters/03-attention.html", "notebooks/03_attention.html"]
    for page in pages_ko:
        phone.get(f"{server}/ko/{page}")
        settle(phone)
        phone.execute_script("document.getElementById('__drawer').checked = true")   # the sidebar, laid out
        styles = phone.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => getComputedStyle(e).wordBreak)",
            KOREAN_TEXT)
        assert styles and set(styles) == {"keep-all"}, (page, set(styles))
        assert phone.execute_script(SPLIT_WORDS, KOREAN_TEXT) == [], page
        assert phone.execute_script("return document.documentElement.scrollWidth") <= 390, page
    # the check sees a split: the same text in a narrow box with the browser's default rule
    phone.execute_script(
        "const h = document.createElement('h2'); h.id = 'probe'; h.style.cssText = 'width: 5em; word-break: normal';"
        "h.textContent = '트랜스포머 어텐션을 단계별로 살펴보기'; document.querySelector('.md-content').prepend(h)")
    assert phone.execute_script(SPLIT_WORDS, "#probe") != []
    phone.get(f"{server}/en/chapters/03-attention.html")
    settle(phone)
    assert phone.execute_script("return getComputedStyle(document.querySelector('h1')).wordBreak") == "normal"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("lang,scheme,suffix", [("en", "light", ".png#only-light"), ("ko", "dark", "-dark.png#only-dark")])
def test_wide_page_shows_the_figure_of_the_colour_scheme(browser, server, lang, scheme, suffix):
    """At 1280 px, in the reader's colour scheme: only that scheme's figure is
    shown (no white figure in dark mode), and the sidebar does not repeat the
    site name that the header shows."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    try:
        browser.get(f"{server}/{lang}/chapters/05-sampling.html")
        browser.execute_script("localStorage.clear()")   # Material keeps the last palette there
        browser.refresh()
        settle(browser)
        shown = browser.execute_script(
            "return [...document.querySelectorAll('img[src*=\"figures/\"]')]"
            ".filter(i => i.checkVisibility()).map(i => [i.getAttribute('src'), i.naturalWidth])")
        assert len(shown) == 2 and all(src.endswith(suffix) and width > 0 for src, width in shown), shown
        # the light figure's white corner, the dark one's page background
        corner = browser.execute_script("""
            const img = [...document.querySelectorAll('img[src*="figures/"]')].find(i => i.checkVisibility());
            const c = document.createElement('canvas'); c.width = c.height = 1;
            c.getContext('2d').drawImage(img, 0, 0, 1, 1, 0, 0, 1, 1);
            return [...c.getContext('2d').getImageData(0, 0, 1, 1).data].slice(0, 3);""")
        assert (min(corner) > 240) == (scheme == "light"), corner
        name = mkdocs_config(lang)["site_name"]
        sidebar = browser.execute_script(
            "return document.querySelector('.md-sidebar--primary .md-sidebar__scrollwrap').innerText")
        assert name not in sidebar and name in browser.execute_script(
            "return document.querySelector('.md-header').innerText"), lang
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@functools.cache
def serve_like_github_pages(site: Path, prefix: str) -> str:
    """A server that hosts `site` under `prefix` (a project site: /NAME/) and answers a missing
    address with the site's root 404.html and status 404, as GitHub Pages does."""
    import http.server
    import threading

    class Pages(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            path = self.path.split("?")[0]
            inner = site / path.removeprefix(prefix).lstrip("/")
            if path.startswith(prefix) and (inner.is_file() or (inner / "index.html").is_file()):
                self.path = "/" + path.removeprefix(prefix)
                return super().send_head()
            body = (site / "404.html").read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return __import__("io").BytesIO(body)

    handler = functools.partial(Pages, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.mark.browser
def test_a_missing_address_on_the_hosted_site_leads_home_in_its_language(browser, site):
    """GitHub Pages answers any missing address of a project site with the root 404.html: its links
    must work at every depth (they are absolute, under the site's own path), in the address's
    language, with no request but the page itself and no console error but its own 404 status."""
    import urllib.request

    from autograde.repository import settings

    prefix = settings(ROOT).pages_path                           # /llm-course/ for the shipped setting
    origin = serve_like_github_pages(site, prefix)
    for address, lang in ((f"{prefix}ko/chapters/no-such-page.html", "ko"), (f"{prefix}en/x/y/z", "en"),
                          (f"{prefix}nowhere", "en")):           # no language in it: the browser's (English)
        console_errors(browser)
        browser.get(origin + address)
        assert browser.execute_script("return document.documentElement.lang") == lang, address
        title = browser.execute_script("return document.getElementById('title').textContent")
        assert title == ("페이지를 찾을 수 없습니다" if lang == "ko" else "Page not found"), address
        links = browser.execute_script(
            "return [...document.querySelectorAll('a')].map(a => [a.hreflang, a.href, a.ariaCurrent])")
        assert links == [["en", f"{origin}{prefix}en/index.html", "true" if lang == "en" else None],
                         ["ko", f"{origin}{prefix}ko/index.html", "true" if lang == "ko" else None]], address
        for _, href, _ in links:
            assert urllib.request.urlopen(href, timeout=30).status == 200, href
        errors = [e for e in console_errors(browser) if "status of 404" not in e]
        assert errors == [], (address, errors)
        assert browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)") == [], address
