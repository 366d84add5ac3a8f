"""MkDocs hooks of the course site (site-config/{en,ko}.yml load this file).

- on_files: add the shared, vendored assets of course/assets/ (KaTeX, mermaid,
  iframe-worker, course.css, katex-init.js) and, for Korean, the generated
  query script assets/ko-search.js;
- on_files also adds the student notebooks exercises/<lang>/<name>/<name>.ipynb
  as notebooks/<name>.ipynb, so that they can be downloaded offline, and as
  notebooks/<name>.ipynb.js, which the button uses from file://
  (course/assets/notebook-download.js);
- on_page_markdown: the "Open in Colab" button (extra.repository and
  extra.default_branch) and the "Download notebook" button (a relative link to
  notebooks/<name>.ipynb inside the site) of pages with `notebook:` front matter;
- on_files also writes assets/llm-course/tokenizer-data.js and
  model-<hash>.js, the reference tokenizer and model for the browser widgets
  (autograde/site/widgets.py);
- on_page_content: figures from figures/*.png get their intended CSS width
  (figures.py draws them at 2x) so that the text keeps its designed size, and
  their dark twin (NAME-dark.png) for the dark colour scheme; a line
  `<div data-llm-widget="NAME"></div>` becomes that widget;
- on_template_context / on_post_template: the 404 page links relative to its
  language's root (MkDocs makes error pages' links root-absolute);
- on_post_page: no <link rel="alternate" hreflang> in the head (Material fetches
  sitemap.xml next to each such link, which fails from file://; the switcher
  links are set per page instead);
- on_page_context: the language switcher links to the same page in the other
  language (relative, so it works from file:// too); on_post_page marks the
  current language in that menu (aria-current);
- on_post_build: Korean search terms in the search index (field `ko`), and
  Material's lazy mermaid load pointed at the vendored copy instead of unpkg,
  with tighter layout options so that diagrams fit a phone.
"""
from __future__ import annotations

import html
import json
import posixpath
import re
import struct
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

# mkdocs imports this file by path, not as part of the package
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from autograde.errors import CourseError  # noqa: E402
from autograde.site import korean, widgets  # noqa: E402
from autograde.site.labels import LABELS  # noqa: E402  (the site's label catalogue)

ASSETS = ROOT / "course" / "assets"


def _lang(config) -> str:
    return config.theme["language"]


def on_files(files, config):
    # Vendored and shared files, copied into every language's site/<lang>/assets/.
    for path in sorted(ASSETS.rglob("*")):
        if path.is_file() and path.suffix != ".md":  # .md would become a page
            rel = path.relative_to(ASSETS.parent).as_posix()  # assets/...
            files.append(File(rel, str(ASSETS.parent), config.site_dir, config.use_directory_urls))
    if _lang(config) == "ko":
        files.append(File.generated(config, "assets/ko-search.js", content=korean.query_js()))
    # The reference tokenizer for the browser widgets, from the checkpoint.
    files.append(File.generated(config, widgets.TOKENIZER_DATA, content=_widget_data(widgets.tokenizer_js)))
    # ... and the reference model (its name carries the checkpoint's hash)
    model_path = _widget_data(widgets.model_data_path)
    files.append(File.generated(config, model_path, content=_widget_data(widgets.model_js)))
    # The student notebooks, shipped in the site for the download buttons.
    for path in sorted((ROOT / "exercises" / _lang(config)).glob("*/*.ipynb")):
        if path.parent.name == path.stem:
            files.append(File.generated(config, notebook_file(path.stem), abs_src_path=str(path)))
            files.append(File.generated(config, notebook_script(path.stem), content=notebook_js(path)))
    return files


def _widget_data(export) -> str:
    try:
        return export()
    except CourseError as exc:
        raise PluginError(f"the browser widgets' data could not be exported: {exc}") from None


def notebook_file(name: str) -> str:
    """Where the student notebook `name` lies inside each language's site."""
    return f"notebooks/{name}.ipynb"


def notebook_script(name: str) -> str:
    """The same notebook as a script, for the download button from file://
    (course/assets/notebook-download.js)."""
    return f"notebooks/{name}.ipynb.js"


def notebook_js(path: Path) -> str:
    """A script that hands the notebook's exact text to courseNotebook(); the
    page turns it into a Blob, which saves the same bytes as the .ipynb."""
    text = path.read_text(encoding="utf-8")
    return f"courseNotebook({json.dumps(path.stem)}, {json.dumps(text)});\n"


def notebook_links(config, lang: str, name: str, page_uri: str = "index.html") -> dict[str, str]:
    """The Colab URL of exercises/<lang>/<name>/<name>.ipynb and the download
    link, relative to the page `page_uri` (site path such as chapters/01-tokens.html)."""
    repo, branch = config.extra.get("repository"), config.extra["default_branch"]
    if not repo:                          # unset: the checkout's git remote, as for the notebooks
        from autograde.repository import settings

        repo = settings(ROOT).slug
    path = f"exercises/{lang}/{name}/{name}.ipynb"
    here = posixpath.dirname(page_uri) or "."
    return {
        "colab": f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}",
        "download": posixpath.relpath(notebook_file(name), here),
        "script": posixpath.relpath(notebook_script(name), here),
    }


def on_page_markdown(markdown, page, config, files):
    name = page.meta.get("notebook")
    if not name:
        return markdown
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", str(name)):
        raise PluginError(f"{page.file.src_uri}: notebook name {name!r} is not a plain file name")
    lang = _lang(config)
    if files.get_file_from_path(notebook_file(name)) is None:
        raise PluginError(f"{page.file.src_uri}: notebook {name!r} has no exercises/{lang}/{name}/{name}.ipynb")
    links, labels = notebook_links(config, lang, name, page.file.dest_uri), LABELS[lang]
    buttons = (
        f'<p class="nb-buttons" data-search-exclude>'
        f'<a class="md-button md-button--primary nb-colab" href="{html.escape(links["colab"])}">{labels["colab"]}</a> '
        f'<a class="md-button nb-download" href="{html.escape(links["download"])}" download="{name}.ipynb" '
        f'type="application/x-ipynb+json" data-notebook="{name}" '
        f'data-notebook-script="{html.escape(links["script"])}">{labels["download"]}</a>'
        f"</p>"
    )
    # right after the page title (the first "# " line), else at the top
    lines = markdown.splitlines()
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "\n".join(lines[:at] + ["", buttons, ""] + lines[at:])


# figures.py saves every figure at FIGURE_DPI, i.e. FIGURE_DPI / 96 image pixels
# per CSS pixel; the width attribute makes the browser show it at its designed
# size (and narrower on small screens, see course/assets/course.css).
FIGURE_IMG = re.compile(r'<img\b[^>]*?\bsrc="([^"]*\bfigures/[^"/]+\.png)"[^>]*>')


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise PluginError(f"{path} is not a PNG file")
    return struct.unpack(">II", head[16:24])


@event_priority(50)  # before the glightbox plugin wraps each image in a link
def on_page_content(html_text, page, config, files):
    from autograde.figures import DARK_SUFFIX, FIGURE_DPI

    def site_file(src: str):
        return files.get_file_from_path(posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), src)))

    def sized(match: re.Match) -> str:
        tag, src = match.group(0), match.group(1)
        if " width=" in tag:
            return tag
        target = site_file(src)
        if target is None:
            return tag  # MkDocs reports the broken link itself
        w, h = png_size(Path(target.abs_src_path))
        scale = 96 / FIGURE_DPI
        tag = tag[:-1].rstrip("/").rstrip() + f' width="{round(w * scale)}" height="{round(h * scale)}">'
        # the dark twin (figures.py writes NAME-dark.png): Material shows only the
        # image of the current colour scheme (#only-light / #only-dark)
        dark_src = src[: -len(".png")] + DARK_SUFFIX + ".png"
        if site_file(dark_src) is None:
            return tag
        light = tag.replace(f'src="{src}"', f'src="{src}#only-light"', 1)
        return light + light.replace(f'src="{src}#only-light"', f'src="{dark_src}#only-dark"', 1)

    html_text = FIGURE_IMG.sub(sized, html_text)
    # the browser widgets a chapter asks for (<div data-llm-widget="NAME"></div>)
    try:
        return widgets.embed_widgets(html_text, _lang(config), page.file.dest_uri, page.meta.get("notebook"))
    except CourseError as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from None


# Material fetches sitemap.xml next to every <link rel="alternate"> of the head
# to map the current page to the other language; from file:// every such fetch
# is an error in the console, and over http it is a 404 (the link points to a
# page, not a site root). The switcher links are already per page (below), so
# the head links only cost errors.
HEAD_ALTERNATE = re.compile(r'\s*<link rel="alternate" href="[^"]*" hreflang="[^"]*">')


def on_post_page(output, page, config):
    head_end = output.find("</head>")
    return _mark_current_language(HEAD_ALTERNATE.sub("", output[:head_end]) + output[head_end:], _lang(config))


def _mark_current_language(output: str, lang: str) -> str:
    """The switcher's entry for the language being read gets aria-current (and,
    through course.css, a check mark), so the menu says where the reader is."""
    return re.sub(rf'(<a href="[^"]*" hreflang="{lang}" class="md-select__link")>',
                  r'\1 aria-current="page">', output, count=1)


# The 404 page: MkDocs renders error pages with root-absolute links ("/assets/...",
# from site_url, "/" when unset), which from file:// or from site/<lang>/ on a
# server load nothing: an unstyled page and a console error per asset. Each
# language's 404.html lies at that language's root, so links relative to that
# root work wherever the file is opened directly (file://, http .../en/404.html).
ERROR_PAGE = "404.html"


def on_template_context(context, template_name, config):
    if template_name != ERROR_PAGE:
        return context
    from mkdocs.utils import normalize_url

    context["base_url"] = "."
    context["extra_css"] = [normalize_url(str(p), None, ".") for p in config.extra_css]
    context["extra_javascript"] = [normalize_url(str(p), None, ".") for p in config.extra_javascript]
    for alt in config.extra["alternate"]:   # the other language's home page
        alt["link"] = f"../{alt['lang']}/index.html"
    return context


def on_post_template(output, template_name, config):
    if template_name != ERROR_PAGE:
        return output
    return on_post_page(output, None, config)


def on_page_context(context, page, config, nav):
    # Material renders config.extra.alternate with the `url` filter, which makes a
    # root-relative link ("../ko/chapters/x.html" from site/en/) relative to the
    # current page. Setting it per page keeps the reader on the same page.
    for alt in config.extra["alternate"]:
        alt["link"] = f"../{alt['lang']}/{page.file.dest_uri}"
    return context


@event_priority(50)  # before the search plugin writes search_index.json
def on_post_build(config):
    if _lang(config) == "ko":
        search = next((p for p in config.plugins.values() if hasattr(p, "search_index")), None)
        if search is not None:
            for entry in search.search_index.entries:
                text = re.sub(r"<[^>]+>", " ", entry["title"] + " " + entry["text"])
                entry["ko"] = " ".join(korean.index_terms(html.unescape(text)))
    _use_vendored_mermaid(Path(config.site_dir))


# Material loads mermaid lazily from unpkg.com when a page has a diagram and no
# global `mermaid` exists. Point that one URL at the vendored copy, relative to
# the bundle's own URL (site/<lang>/assets/javascripts/bundle.*.js).
MERMAID_CDN = re.compile(r"""(["'])https://unpkg\.com/mermaid@[^"']*\1""")
MERMAID_LOCAL = ('new URL("../vendor/mermaid/mermaid.min.js",'
                 'document.querySelector("script[src*=\'javascripts/bundle.\']").src).href')


# Tighter diagrams, so that they fit a phone (390 px) with 16 px text: less
# space between ranks and nodes, and sequence messages wrapped to narrow lanes.
# Merged into the options Material passes to mermaid.initialize (flowchart added
# at the front, sequence into Material's own sequence object of font sizes).
MERMAID_INIT = "mermaid.initialize({startOnLoad:!1,"
MERMAID_SEQUENCE = 'sequence:{actorFontSize:"16px"'
# useMaxWidth false: a diagram keeps its natural size (16 px text) and scrolls
# sideways inside its box (course.css) when it is wider than a phone, instead of
# shrinking its text below 12 px.
MERMAID_FLOWCHART = {"rankSpacing": 30, "nodeSpacing": 20, "padding": 8, "diagramPadding": 4, "useMaxWidth": False}
MERMAID_SEQUENCE_OPTIONS = {"wrap": True, "width": 90, "actorMargin": 16, "diagramMarginX": 4, "boxMargin": 6,
                            "useMaxWidth": False}


def _js_members(options: dict) -> str:
    return json.dumps(options, separators=(",", ":"))[1:-1]


def _use_vendored_mermaid(site: Path) -> None:
    bundles = list((site / "assets" / "javascripts").glob("bundle.*.js"))
    patched = configured = 0
    for bundle in bundles:
        text = bundle.read_text(encoding="utf-8")
        new, n = MERMAID_CDN.subn(MERMAID_LOCAL, text)
        m = int(MERMAID_INIT in new and MERMAID_SEQUENCE in new)
        new = new.replace(MERMAID_INIT, MERMAID_INIT + f"flowchart:{{{_js_members(MERMAID_FLOWCHART)}}},", 1)
        new = new.replace(MERMAID_SEQUENCE, "sequence:{" + _js_members(MERMAID_SEQUENCE_OPTIONS)
                          + ',actorFontSize:"16px"', 1)
        if n or m:
            bundle.write_text(new, encoding="utf-8")
        patched += n
        configured += m
    if not patched or not configured:
        raise PluginError("could not find Material's mermaid CDN URL or mermaid.initialize call in its bundle; "
                          "update autograde/site/hooks.py for this Material version")
