"""The guides' facts about the course, checked against the course itself: which chapters have a
notebook (the chapters' front matter), the assignment table, notebook paths with their language
level, the Korean button label, AUTHORING.md's chapter list."""
import re
from pathlib import Path

import pytest
import yaml

from autograde.site.hooks import LABELS

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "course"
LANGS = ("en", "ko")
CHAPTERS = sorted((COURSE / "en" / "chapters").glob("*.md"))


def front_matter(path: Path) -> dict:
    match = re.match(r"---\n(.*?)\n---", path.read_text(encoding="utf-8"), re.S)
    return (yaml.safe_load(match.group(1)) or {}) if match else {}


def number(path: Path) -> int:
    return int(path.name.split("-")[0])


NOTEBOOKS = {number(p): front_matter(p).get("notebook") for p in CHAPTERS}


def chapter_list(numbers: list[int], lang: str) -> str:
    """1–7 and 9 / 1–7장, 9장: runs of three or more joined by a dash."""
    runs, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            runs.append((start, n))
            start = None
    parts = []
    for a, b in runs:
        if b - a >= 2:
            parts.append(f"{a}–{b}")
        else:
            parts.extend(str(n) for n in range(a, b + 1))
    if lang == "ko":
        return ", ".join(f"{p}장" for p in parts)
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def test_both_languages_agree_on_the_front_matter():
    for path in CHAPTERS:
        assert front_matter(COURSE / "ko" / "chapters" / path.name) == front_matter(path), path.name


@pytest.mark.parametrize("lang", LANGS)
def test_setup_names_the_chapters_that_have_notebooks_and_the_button(lang):
    text = (COURSE / lang / "setup.md").read_text(encoding="utf-8")
    having = [n for n, nb in NOTEBOOKS.items() if nb]
    wanted = f"(chapters {chapter_list(having, lang)})" if lang == "en" else f"({chapter_list(having, lang)})"
    assert wanted in text, wanted
    assert f"**{LABELS[lang]['colab']}**" in text
    if lang == "ko":
        assert LABELS["en"]["colab"] not in text


@pytest.mark.parametrize("lang", LANGS)
def test_instructors_assignment_table_and_chapters_without_notebooks(lang):
    text = (COURSE / lang / "instructors.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\d\d_\w+)` \| (.*) \|$", text, re.M))
    linked = {a: set(re.findall(r"\(chapters/(\d\d)-[\w-]+\.md\)", cell)) for a, cell in rows.items()}
    wanted: dict[str, set] = {}
    for n, nb in NOTEBOOKS.items():
        if nb:
            wanted.setdefault(nb, set()).add(f"{n:02d}")
    assert linked == wanted
    without = [n for n, nb in NOTEBOOKS.items() if not nb]
    if not without:
        sentence = {"en": "Every chapter has its notebook, with the same number.",
                    "ko": "모든 장에는 번호가 같은 노트북이 있습니다."}[lang]
    elif lang == "en":
        sentence = f"Chapter {without[0]} has no notebook." if len(without) == 1 else \
            f"Chapters {chapter_list(without, 'en')} have no notebook."
    else:
        sentence = f"{chapter_list(without, 'ko')}에는 노트북이 없습니다."
    assert sentence in " ".join(text.split()), sentence


@pytest.mark.parametrize("page", ["en/instructors.md", "ko/instructors.md", "en/setup.md", "ko/setup.md",
                                  "AUTHORING.md"])
def test_notebook_paths_name_their_language(page):
    text = (COURSE / page).read_text(encoding="utf-8")
    bare = re.findall(r"\b(?:solutions|exercises|submitted/\w+)/\d\d_\w+", text)
    bare = [b for b in bare if not b.startswith("submitted")]
    assert not bare, bare


def test_authoring_lists_every_chapter_and_its_notebook():
    text = (COURSE / "AUTHORING.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `chapters/([\w-]+\.md)` \| (.*?) \|$", text, re.M))
    assert set(table) == {p.name for p in CHAPTERS}
    for path in CHAPTERS:
        title = re.search(r"^# (.+)$", path.read_text(encoding="utf-8"), re.M).group(1)
        assert table[path.name].split(" (")[0] == title, path.name
    listed = re.search(r"Chapter \*n\* has notebook \*n\*: ([\w, ]+?) \(", " ".join(text.split())).group(1)
    said = {int(a[:2]): a for a in listed.split(", ")}
    assert said == {n: nb for n, nb in NOTEBOOKS.items() if nb}


def section(text: str, anchor: str) -> str:
    """The text of the section whose heading ends with {#anchor}, up to the next heading."""
    return re.search(r"^#+ .*\{#" + anchor + r"\}\n(.*?)(?=^#)", text, re.M | re.S).group(1)


def test_both_instructors_guides_have_the_same_sections():
    headings = {lang: re.findall(r"^(#+) .*?(\{#[\w-]+\})?$", (COURSE / lang / "instructors.md").read_text(
        encoding="utf-8"), re.M) for lang in LANGS}
    assert headings["en"] == headings["ko"]


def test_both_instructors_guides_name_the_same_notebooks():
    """A renumbering that reached one guide and not the other ("노트북 4과 4는" for "Notebooks 4 and 5")."""
    en = (COURSE / "en" / "instructors.md").read_text(encoding="utf-8")
    ko = (COURSE / "ko" / "instructors.md").read_text(encoding="utf-8")
    said = {"en": re.findall(r"\b[Nn]otebooks? (\d)(?: and (\d))?", en),
            "ko": re.findall(r"노트북 (\d)(?:[과와] (\d))?", ko)}
    numbers = {lang: sorted(n for found in pairs for n in found if n) for lang, pairs in said.items()}
    assert numbers["en"] == numbers["ko"] and numbers["en"]


READ_WITH_A_FINAL_CONSONANT = set("013678")        # 영 일 삼 육 칠 팔 (and 십 for 10); 이 사 오 구 have none


@pytest.mark.parametrize("page", sorted(p.relative_to(COURSE / "ko").as_posix() for p in (COURSE / "ko").rglob("*.md")))
def test_korean_particles_after_a_notebook_number_fit_how_it_is_read(page):
    """노트북 4는, 노트북 9는, 노트북 3은: a renumbered notebook keeps the particle of its old number
    unless someone reads the sentence aloud."""
    text = (COURSE / "ko" / page).read_text(encoding="utf-8")
    wrong = []
    for m in re.finditer(r"(노트북|과제|단계) ?(\d+)(은|는|과|와|이|가|을|를)(?=[\s,.)])", text):
        final = m.group(2)[-1] in READ_WITH_A_FINAL_CONSONANT
        if (m.group(3) in "은과이을") != final:
            wrong.append(m.group(0))
    assert not wrong, wrong


@pytest.mark.parametrize("lang", LANGS)
def test_instructors_edit_a_notebook_where_the_build_keeps_it(lang):
    """`course build` writes solutions/en and solutions/ko again from solutions/src: the guide must send
    an instructor who changes a notebook there, or the change is lost at the next build."""
    release = " ".join(section((COURSE / lang / "instructors.md").read_text(encoding="utf-8"), "release").split())
    assert "`solutions/src/NN_name.py`" in release and "`course build --skip-figures`" in release
