"""The drawing rules every figure of the site follows, apart from what the figures show.

Figures are drawn to be read on a phone: at most FIGURE_WIDTH_IN inches wide,
no text smaller than MIN_FONT_PT, saved at FIGURE_DPI (2x: the site shows
FIGURE_DPI / 96 image pixels per CSS pixel). `_save` refuses a figure that
breaks these rules and records, in figures/figures.json, each figure's smallest
text size in image pixels; the browser tests scale that by the width the image
is shown at (a text of s image pixels shown at width w of natural width n is
s * w / n CSS pixels tall) and require at least 12 px at a 390 px wide screen.

Every figure also gets a dark twin, NAME-dark.png (`dark_variant`), which the
site shows in the dark colour scheme instead of a bright white rectangle.

autograde.figures (the site's figures) and autograde.figures_training (the loss curve, which
notebook 5 draws too) both build on this module; neither imports the other's drawing rules.
"""
from __future__ import annotations

import json
from pathlib import Path

from autograde.errors import CourseError

FIGURE_DPI = 192          # 2 image pixels per CSS pixel
FIGURE_WIDTH_IN = 5.2     # shown at most 5.2 * 96 = 499 CSS px wide
MIN_FONT_PT = 13          # 13 pt at 96 px/in = 17.3 CSS px at full size, >= 12 px at 390 px
DARK_SUFFIX = "-dark"     # NAME-dark.png: the same figure for the dark colour scheme
# Material's slate background (hsl(232, 15%, 14%)) and the light grey of its text:
# a dark figure's white turns into the page's background, its black into the text.
DARK_BACKGROUND = (30, 32, 41)
DARK_FOREGROUND = (226, 228, 233)
SIDECAR = "figures.json"


# ----------------------------------------------------------------------------
# matplotlib with a Hangul font (NanumGothic ships in koreanize-matplotlib)


def _pyplot():
    import importlib.util

    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:   # scripts and the build: no display; notebooks keep inline plots
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise CourseError("the Hangul font package koreanize-matplotlib is missing: pip install koreanize-matplotlib")
    fonts = Path(list(spec.submodule_search_locations)[0]) / "fonts"
    for ttf in sorted(fonts.glob("NanumGothic*.ttf")):
        font_manager.fontManager.addfont(str(ttf))
    plt.rcParams.update({"font.family": ["NanumGothic", "DejaVu Sans"], "axes.unicode_minus": False,
                         "figure.dpi": 100, "savefig.dpi": FIGURE_DPI, "svg.hashsalt": "course",
                         "font.size": MIN_FONT_PT, "axes.titlesize": MIN_FONT_PT + 1,
                         "axes.labelsize": MIN_FONT_PT, "xtick.labelsize": MIN_FONT_PT,
                         "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
                         "figure.titlesize": MIN_FONT_PT + 1, "figure.labelsize": MIN_FONT_PT,
                         "savefig.bbox": "tight", "savefig.pad_inches": 0.08})
    return plt


def figure_texts(fig) -> list:
    """Every text the figure draws: titles, axis labels, tick labels, legends, free text."""
    texts = list(fig.texts)
    for attr in ("_suptitle", "_supxlabel", "_supylabel"):
        if getattr(fig, attr, None) is not None:
            texts.append(getattr(fig, attr))
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += ax.get_xticklabels() + ax.get_yticklabels()
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
            if ax.get_legend().get_title().get_text():
                texts.append(ax.get_legend().get_title())
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _save(fig, path: Path) -> Path:
    """Save at FIGURE_DPI with a tight box; refuse small text or a too wide figure;
    record the smallest text size in image pixels in figures.json beside it."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    texts = figure_texts(fig)
    small = sorted({f"{t.get_text()!r} ({t.get_fontsize():g} pt)" for t in texts if t.get_fontsize() < MIN_FONT_PT})
    box = fig.get_tightbbox(fig.canvas.get_renderer())       # inches, everything drawn
    problem = None
    if small:
        problem = f"{path.name}: text below {MIN_FONT_PT} pt: {', '.join(small[:5])}"
    elif box.width > FIGURE_WIDTH_IN + 0.2:   # 0.2 in: the tight box's padding
        problem = (f"{path.name}: {box.width:.2f} in wide, more than {FIGURE_WIDTH_IN} in; "
                   "stack the panels or wrap the titles")
    if problem:
        plt.close(fig)
        raise CourseError(problem)
    fig.savefig(path, metadata={"Software": None})   # no version stamp: same bytes every run
    plt.close(fig)
    sidecar = path.parent / SIDECAR
    record = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    record[path.name] = {"dpi": FIGURE_DPI, "min_font_pt": min(t.get_fontsize() for t in texts),
                         "min_text_px": round(min(t.get_fontsize() for t in texts) * FIGURE_DPI / 72, 2)}
    record[dark_path(path).name] = record[path.name]   # same layout, same text sizes
    dark_variant(path)
    sidecar.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def dark_path(path: Path) -> Path:
    return path.with_name(path.stem + DARK_SUFFIX + path.suffix)


def dark_variant(path: Path) -> Path:
    """Write NAME-dark.png: the figure with its lightness turned over and its hues kept.

    In HLS, c + 1 - (max + min) per pixel maps lightness L to 1 - L and keeps hue
    and saturation: white becomes black, black text white, a dark blue a light
    blue, a pale grey bar a dim one; a heat map's strong cells become the bright
    ones. The result is then spread between the dark page's background and text
    colours. Computed from the light PNG, so both always show the same data."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    turned = rgb + (1.0 - rgb.max(axis=2, keepdims=True) - rgb.min(axis=2, keepdims=True))
    low, high = np.array(DARK_BACKGROUND) / 255.0, np.array(DARK_FOREGROUND) / 255.0
    out = low + np.clip(turned, 0.0, 1.0) * (high - low)
    target = dark_path(path)
    Image.fromarray(np.rint(out * 255.0).astype(np.uint8), "RGB").save(target, format="PNG")
    return target
