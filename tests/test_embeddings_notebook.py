"""Notebook 2 (embeddings): the solution's steps pass on several seeds, correct code written another way
passes, the known mistakes are named, forbidden shortcuts are refused, the numbers that chapter 2 and the
notebook quote come from the code (full marks in the grader's sandbox, and the exercise failing cleanly: tests/test_grader.py)."""
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from notebook_source import solution_namespace
from autograde.checks.core import Case
from autograde.checks.registry import get_check
from autograde.checks.runner import LAST_RESULTS, run_check
from autograde.reference.functional import sinusoidal_table

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "solutions" / "src" / "02_embeddings.py"
REFERENCE = REPO / "autograde" / "data" / "reference" / "model.safetensors"
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="the reference model is not trained yet")
STEPS = ("cosine_similarity", "nearest_neighbours", "sinusoidal_encoding", "embed_with_positions")


SOL = solution_namespace(SOURCE, {"math": math, "torch": torch})


def key(step, fn, hidden=False, seed=None):
    LAST_RESULTS.clear()                  # each call judged alone, not blamed on an earlier test
    return run_check(f"embeddings.{step}", fn, hidden=hidden, seed=seed)["key"]


# ----------------------------------------------------------------------------
# the solution passes, visible and hidden, several seeds


@needs_reference
@pytest.mark.parametrize("step", STEPS)
def test_the_solution_passes_visible_and_hidden_cases(step):
    assert key(step, SOL[step]) == "ok"
    for seed in (1, 2, 3, 4, 5):
        result = run_check(f"embeddings.{step}", SOL[step], hidden=True, seed=seed)
        assert result["passed"], result


def _inputs(cases):
    flat = []
    for c in cases:
        for value in (*c.args, *c.kwargs.values()):
            flat.append(value if isinstance(value, torch.Tensor) else torch.tensor(float(value)))
    return flat


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


@needs_reference
@pytest.mark.parametrize("step", STEPS)
def test_cases_are_pure_in_the_seed(step):
    check = get_check(f"embeddings.{step}")
    assert _same(_inputs(check.cases(7, True)), _inputs(check.cases(7, True)))
    assert not _same(_inputs(check.cases(7, True)), _inputs(check.cases(8, True)))
    assert _same(_inputs(check.cases(0, False)), _inputs(check.cases(0, False)))


# ----------------------------------------------------------------------------
# correct code written differently


def cos_by_einsum(a, b, eps=1e-8):
    dots = torch.einsum("nc,mc->nm", a, b)
    la = torch.sqrt((a * a).sum(-1)).clamp(min=eps)
    lb = torch.sqrt((b * b).sum(-1)).clamp(min=eps)
    return dots / la[:, None] / lb[None, :]


def nn_with_argsort(table, query_id, k):
    if k < 1 or k >= len(table):
        raise ValueError("k out of range")
    sims = cos_by_einsum(table[query_id][None], table)[0]
    sims[query_id] = -float("inf")
    return torch.argsort(-sims, stable=True)[:k]            # a tensor of ids: accepted too


def pe_annotated_transformer(n_positions, dim):
    if dim % 2 == 1:
        raise ValueError("dim must be even")
    position = torch.arange(0, n_positions).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * -(math.log(10000.0) / dim))
    pe = torch.zeros(n_positions, dim)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def pe_in_float64(n_positions, dim):
    if dim % 2:
        raise ValueError("odd dim")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) * 2 / dim)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(n_positions, dim).float()


def embed_one_hot(ids, tok_emb, pos_table, start=0):
    T = ids.shape[1]
    if start + T > len(pos_table):
        raise ValueError("too long")
    one_hot = F.one_hot(ids, tok_emb.shape[0]).to(tok_emb.dtype)          # (B, T, V): the chapter's e_t
    return one_hot @ tok_emb + pos_table[start:start + T]


@needs_reference
@pytest.mark.parametrize("step, fn", [("cosine_similarity", cos_by_einsum), ("nearest_neighbours", nn_with_argsort),
                                      ("sinusoidal_encoding", pe_annotated_transformer),
                                      ("sinusoidal_encoding", pe_in_float64),
                                      ("embed_with_positions", embed_one_hot)])
def test_correct_variants_pass(step, fn):
    assert key(step, fn) == "ok"
    assert key(step, fn, hidden=True, seed=5) == "ok"


def test_the_solution_table_is_the_reference_table():
    for n, d in ((4, 8), (128, 128), (300, 2)):
        assert torch.equal(SOL["sinusoidal_encoding"](n, d), sinusoidal_table(n, d))


def test_near_ties_may_come_in_either_order_but_exact_ties_go_by_id():
    """The judge lets neighbours whose cosines differ only by rounding swap, but not exactly equal ones."""
    check = get_check("embeddings.nearest_neighbours")
    # rows 1 and 2 point the same way (exact tie), row 3 differs from them by ~3e-7 in cosine, row 4 by 0.7
    table = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 2.0], [1.0, 1.0 + 1e-6], [0.0, 1.0]])
    case = Case("near tie", (table, 0, 4))
    assert check.reference(table, 0, 4) == [1, 2, 3, 4]
    assert check.judge(case, [1, 2, 3, 4]).passed
    assert check.judge(case, [1, 3, 2, 4]).passed
    assert check.judge(case, [3, 1, 2, 4]).passed
    assert check.judge(case, [2, 1, 3, 4]).key == "mistake_nn_ties"
    assert check.judge(case, [1, 2, 4, 3]).key == "wrong_value"
    short = Case("near tie, k=1", (table, 0, 1))
    assert check.judge(short, [3]).passed
    assert check.judge(short, [2]).key == "mistake_nn_ties"      # the tie goes to the smaller id, 1


# ----------------------------------------------------------------------------
# mistakes, written the way a student would write them


def cos_no_norm(a, b, eps=1e-8):
    return a @ b.T


def cos_only_a(a, b, eps=1e-8):
    return (a / a.norm(dim=1, keepdim=True).clamp(min=eps)) @ b.T


def cos_squared_lengths(a, b, eps=1e-8):
    la = (a ** 2).sum(-1, keepdim=True).clamp(min=eps)
    lb = (b ** 2).sum(-1, keepdim=True).clamp(min=eps)
    return (a @ b.T) / (la * lb.T)


def cos_norm_dim0(a, b, eps=1e-8):
    return (a / a.norm(dim=0).clamp(min=eps)) @ (b / b.norm(dim=0).clamp(min=eps)).T


def cos_no_eps(a, b, eps=1e-8):
    return (a @ b.T) / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :])


def cos_eps_in_denominator(a, b, eps=1e-8):
    return (a @ b.T) / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :] + eps)


def cos_rowwise(a, b, eps=1e-8):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=eps)


def cos_no_transpose(a, b, eps=1e-8):
    a = a / a.norm(dim=-1, keepdim=True).clamp(min=eps)
    b = b / b.norm(dim=-1, keepdim=True).clamp(min=eps)
    return a @ b


def cos_fixed_eps(a, b, eps=1e-8):
    return SOL["cosine_similarity"](a, b)


def cos_in_float32(a, b, eps=1e-8):
    a32, b32 = a.float(), b.float()
    return SOL["cosine_similarity"](a32, b32, eps).to(a.dtype)


def cos_uses_torch(a, b, eps=1e-8):
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1, eps=eps)


def cos_uses_normalize(a, b, eps=1e-8):
    return F.normalize(a, dim=-1, eps=eps) @ F.normalize(b, dim=-1, eps=eps).T


def nn_keeps_itself(table, query_id, k):
    sims = SOL["cosine_similarity"](table[query_id][None], table)[0]
    return torch.sort(sims, descending=True, stable=True).indices[:k].tolist()


def nn_ascending(table, query_id, k):
    sims = SOL["cosine_similarity"](table[query_id][None], table)[0]
    order = torch.sort(sims, stable=True).indices.tolist()
    return [i for i in order if i != query_id][:k]


def nn_by_dot(table, query_id, k):
    if not 0 < k < len(table):
        raise ValueError("bad k")
    sims = table @ table[query_id]
    order = torch.sort(sims, descending=True, stable=True).indices.tolist()
    return [i for i in order if i != query_id][:k]


def nn_argsort_flip(table, query_id, k):
    if not 0 < k < len(table):
        raise ValueError("bad k")
    sims = SOL["cosine_similarity"](table[query_id][None], table)[0]
    order = sims.argsort(stable=True).flip(0).tolist()
    return [i for i in order if i != query_id][:k]


def nn_drop_after_topk(table, query_id, k):
    if not 0 < k < len(table):
        raise ValueError("bad k")
    sims = SOL["cosine_similarity"](table[query_id][None], table)[0]
    top = torch.sort(sims, descending=True, stable=True).indices[:k].tolist()
    return [i for i in top if i != query_id]


def nn_never_refuses(table, query_id, k):
    sims = SOL["cosine_similarity"](table[query_id][None], table)[0]
    order = torch.sort(sims, descending=True, stable=True).indices.tolist()
    return [i for i in order if i != query_id][:k]


def pe_halves(n_positions, dim):
    if dim % 2:
        raise ValueError("odd")
    pos = torch.arange(n_positions).float()[:, None]
    freq = 10000.0 ** (-torch.arange(0, dim, 2).float() / dim)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)


def pe_cos_first(n_positions, dim):
    if dim % 2:
        raise ValueError("odd")
    pe = torch.zeros(n_positions, dim)
    for pos in range(n_positions):
        for i in range(0, dim, 2):
            pe[pos, i] = math.cos(pos / 10000 ** (i / dim))
            pe[pos, i + 1] = math.sin(pos / 10000 ** (i / dim))
    return pe


def pe_column_loop(n_positions, dim):
    if dim % 2:
        raise ValueError("odd")
    pe = torch.zeros(n_positions, dim)
    for pos in range(n_positions):
        for j in range(dim // 2):
            pe[pos, 2 * j] = math.sin(pos / 10000 ** (2 * (2 * j) / dim))
            pe[pos, 2 * j + 1] = math.cos(pos / 10000 ** (2 * (2 * j) / dim))
    return pe


def pe_times(n_positions, dim):
    if dim % 2:
        raise ValueError("odd")
    pos = torch.arange(n_positions).float()[:, None]
    freq = 10000.0 ** (torch.arange(0, dim, 2).float() / dim)
    pe = torch.zeros(n_positions, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


def pe_from_one(n_positions, dim):
    if dim % 2:
        raise ValueError("odd")
    return sinusoidal_table(n_positions + 1, dim)[1:]


def pe_odd_dim_accepted(n_positions, dim):
    return sinusoidal_table(n_positions, dim + dim % 2)[:, :dim]


def pe_reference_itself(n_positions, dim):
    from autograde.reference import functional

    if dim % 2:
        raise ValueError("odd")
    return functional.sinusoidal_table(n_positions, dim)


def embed_pos_by_id(ids, tok_emb, pos_table, start=0):
    if start + ids.shape[1] > len(pos_table):
        raise ValueError("too long")
    return tok_emb[ids] + pos_table[ids]


def embed_from_zero(ids, tok_emb, pos_table, start=0):
    T = ids.shape[1]
    if start + T > len(pos_table):
        raise ValueError("too long")
    return tok_emb[ids] + pos_table[:T]


def embed_tokens_only(ids, tok_emb, pos_table, start=0):
    if start + ids.shape[1] > len(pos_table):
        raise ValueError("too long")
    return tok_emb[ids]


def embed_concat(ids, tok_emb, pos_table, start=0):
    T = ids.shape[1]
    if start + T > len(pos_table):
        raise ValueError("too long")
    pos = pos_table[start:start + T].expand(ids.shape[0], T, -1)
    return torch.cat([tok_emb[ids], pos], dim=-1)


@needs_reference
@pytest.mark.parametrize("step, fn, expected", [
    ("cosine_similarity", cos_no_norm, "mistake_cos_dot_only"),
    ("cosine_similarity", cos_only_a, "mistake_cos_one_norm"),
    ("cosine_similarity", cos_squared_lengths, "mistake_cos_no_sqrt"),
    ("cosine_similarity", cos_norm_dim0, "mistake_cos_wrong_axis"),
    ("cosine_similarity", cos_no_eps, "mistake_cos_zero_nan"),
    ("cosine_similarity", cos_eps_in_denominator, "mistake_cos_eps_product"),
    ("cosine_similarity", cos_rowwise, "mistake_cos_rowwise"),
    ("cosine_similarity", cos_in_float32, "lost_precision"),   # every step's float64 cases say so (core.py)
    ("cosine_similarity", cos_no_transpose, "mistake_cos_no_transpose"),
    ("cosine_similarity", cos_fixed_eps, "mistake_cos_eps_ignored"),
    ("cosine_similarity", cos_uses_torch, "forbidden_call"),
    ("cosine_similarity", cos_uses_normalize, "forbidden_call"),
    ("nearest_neighbours", nn_keeps_itself, "mistake_nn_includes_self"),
    ("nearest_neighbours", nn_ascending, "mistake_nn_least_similar"),
    ("nearest_neighbours", nn_by_dot, "mistake_nn_dot_product"),
    ("nearest_neighbours", nn_argsort_flip, "mistake_nn_ties"),
    ("nearest_neighbours", nn_drop_after_topk, "mistake_nn_k_minus_one"),
    ("nearest_neighbours", nn_never_refuses, "did_not_raise"),
    ("sinusoidal_encoding", pe_halves, "mistake_pe_halves"),
    ("sinusoidal_encoding", pe_cos_first, "mistake_pe_swapped"),
    ("sinusoidal_encoding", pe_column_loop, "mistake_pe_exponent"),
    ("sinusoidal_encoding", pe_times, "mistake_pe_multiplied"),
    ("sinusoidal_encoding", pe_from_one, "mistake_pe_from_one"),
    ("sinusoidal_encoding", pe_odd_dim_accepted, "did_not_raise"),
    ("sinusoidal_encoding", pe_reference_itself, "forbidden_call"),
    ("embed_with_positions", embed_pos_by_id, "mistake_embed_pos_by_token"),
    ("embed_with_positions", embed_from_zero, "mistake_embed_ignores_start"),
    ("embed_with_positions", embed_tokens_only, "mistake_embed_no_positions"),
    ("embed_with_positions", embed_concat, "mistake_embed_concatenated"),
])
def test_mistakes_are_named(step, fn, expected):
    assert key(step, fn) == expected
    assert key(step, fn, hidden=True, seed=1) == expected      # the hidden cases name it too


@needs_reference
def test_nearest_neighbours_over_a_dot_product_cosine_is_named():
    """The solution's nearest_neighbours on top of a cosine that forgot the lengths: the ranking by dot
    product is what the feedback names."""
    ns = {"torch": torch, "cosine_similarity": cos_no_norm}
    body = re.search(r'kind="solution" id="nearest_neighbours"\n(.*?)# %% kind="test"',
                     SOURCE.read_text(encoding="utf-8"), re.S).group(1)
    exec(compile(body, "student", "exec"), ns)
    assert key("nearest_neighbours", ns["nearest_neighbours"]) == "mistake_nn_dot_product"


# ----------------------------------------------------------------------------
# numbers that chapter 2 and the notebook quote


def _chapter(lang):
    return (REPO / "course" / lang / "chapters" / "02-embeddings.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_chapters_sinusoidal_table_is_the_code(lang):
    pair = r"−?\d\.\d{3}, −?\d\.\d{3}"
    rows = re.findall(rf"^\| (\d) \| ({pair}(?: \| {pair}){{3}}) \|$", _chapter(lang), re.M)
    table = sinusoidal_table(4, 8)
    assert [int(pos) for pos, _ in rows] == [0, 1, 2, 3]
    for pos, cells in rows:
        quoted = [float(x.replace("−", "-")) for x in re.findall(r"−?\d\.\d{3}", cells)]
        assert quoted == [round(float(v), 3) + 0.0 for v in table[int(pos)]], (lang, pos, quoted)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_chapters_toy_cosines_are_the_code(lang):
    from autograde.checks.steps.embeddings import TOY_TABLE

    cos = SOL["cosine_similarity"](TOY_TABLE, TOY_TABLE)
    # the toy vocabulary's words are not the course tokenizer's tokens: double-quoted (AUTHORING.md)
    rows = re.findall(r"^\| `\"[^`]+\"`, `\"[^`]+\"` \| (−?[\d.]+) \| (−?[\d.]+) \|$", _chapter(lang), re.M)
    assert len(rows) == 3                                   # token 0 with tokens 1, 3 and 2, in that order
    for other, row in zip((1, 3, 2), rows):
        dot, cosine = (float(x.replace("−", "-")) for x in row)
        assert dot == round(float(TOY_TABLE[0] @ TOY_TABLE[other]), 2)
        assert cosine == round(float(cos[0, other]), 2)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_chapter_points_to_notebook_6(lang):
    text = _chapter(lang)
    assert text.startswith("---\nnotebook: 02_embeddings\n---\n")
    assert "../notebooks/02_embeddings.md" in text


@needs_reference
def test_the_neighbours_the_notebook_names_are_the_models():
    """The notebook's prose says ' 코드' is among ' 모델''s neighbours and '을' among '은''s."""
    from autograde.reference.checkpoint import load_reference

    ref = load_reference()
    table, tok = ref.model.tok_emb.detach(), ref.tokenizer
    for word, neighbour in ((" 모델", " 코드"), ("은", "을")):
        found = SOL["nearest_neighbours"](table, tok.encode(word)[0], 5)
        assert tok.encode(neighbour)[0] in found, (word, [tok.decode([i]) for i in found])


# ----------------------------------------------------------------------------
# holes a student could slip through, closed (each wrong version passed every case before)


def nn_only_upper_bound(table, query_id, k):
    """Refuses k >= V but returns [] for k = 0 and V - 1 + k ids for a negative k."""
    if k >= len(table):
        raise ValueError("k too large")
    sims = SOL["cosine_similarity"](table[query_id][None], table)[0]
    order = torch.sort(sims, descending=True, stable=True).indices.tolist()
    return [i for i in order if i != query_id][:k]


def pe_float64_table(n_positions, dim):
    """Right values, but a float64 table where the step asks for float32."""
    if dim % 2:
        raise ValueError("dim must be even")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(n_positions, dim)


@needs_reference
@pytest.mark.parametrize("step, fn, expected", [
    ("nearest_neighbours", nn_only_upper_bound, "did_not_raise"),
    ("sinusoidal_encoding", pe_float64_table, "wrong_dtype"),
])
def test_closed_holes_fail_visible_and_hidden(step, fn, expected):
    assert key(step, fn) == expected
    for seed in (1, 2, 3):
        assert key(step, fn, hidden=True, seed=seed) == expected


def cos_in_float64(a, b, eps=1e-8):
    return SOL["cosine_similarity"](a.double(), b.double(), eps)


def embed_in_float64(ids, tok_emb, pos_table, start=0):
    return SOL["embed_with_positions"](ids, tok_emb.double(), pos_table.double(), start)


@needs_reference
@pytest.mark.parametrize("step, fn", [("cosine_similarity", cos_in_float64), ("embed_with_positions", embed_in_float64)])
def test_a_result_in_another_dtype_fails(step, fn):
    """More precise values pass the comparison; the dtype rule fails them (float32 in, float32 out)."""
    assert key(step, fn) == "wrong_dtype"
    assert key(step, fn, hidden=True, seed=4) == "wrong_dtype"


LIBRARY_TABLE_CELL = '''def sinusoidal_encoding(n_positions, dim):
    from transformers.models.distilbert.modeling_distilbert import create_sinusoidal_embeddings

    if dim % 2:
        raise ValueError("dim must be even")
    table = torch.zeros(n_positions, dim)
    create_sinusoidal_embeddings(n_positions, dim, table)          # the very table, ready-made
    return table
'''


@needs_reference
@pytest.mark.slow
def test_a_ready_made_table_from_transformers_fails_in_the_grader(tmp_path):
    """DistilBERT's helper fills exactly this table, so every case passes in the notebook; the grader's
    static pass refuses it by name (the check's forbidden_names: no tripwire, whose import would cost
    seconds at every check), and the other steps keep their points."""
    pytest.importorskip("transformers")
    import json

    from autograde.grader.pipeline import grade_notebook
    from autograde.grader.sandbox import Limits

    def by_id(nb):
        return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if "nbgrader" in c.get("metadata", {})}

    name = "02_embeddings"
    nb = json.loads((REPO / "exercises" / "en" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
    solution = by_id(json.loads((REPO / "solutions" / "en" / name / f"{name}.ipynb").read_text(encoding="utf-8")))
    for gid, cell in by_id(nb).items():
        if cell["metadata"]["nbgrader"].get("solution"):
            cell["source"] = LIBRARY_TABLE_CELL if gid == "sinusoidal_encoding" else solution[gid]["source"]
    path = tmp_path / f"{name}.ipynb"
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    tests = {t["name"]: t for t in grade_notebook(path, Limits(timeout=240, call_timeout=60))["tests"]}
    table = tests["check_sinusoidal_encoding"]
    assert table["status"] == "failed" and table["steps"][0]["key"] == "forbidden_reference", table
    assert "create_sinusoidal_embeddings" in table["output"]
    assert tests["check_embed_with_positions"]["status"] == "passed"


@pytest.mark.parametrize("step, source", [
    ("cosine_similarity", "from sklearn.metrics.pairwise import cosine_similarity as sk\n\n\n"
                          "def cosine_similarity(a, b, eps=1e-8):\n    return torch.from_numpy(sk(a.numpy(), b.numpy()))\n"),
    ("nearest_neighbours", "from sklearn import neighbors\n\n\n"
                           "def nearest_neighbours(table, query_id, k):\n"
                           "    found = neighbors.NearestNeighbors(n_neighbors=k + 1, metric='cosine').fit(table.numpy())\n"
                           "    return found.kneighbors(table[query_id:query_id + 1].numpy())[1][0, 1:].tolist()\n"),
])
def test_library_versions_are_refused_by_the_static_pass(step, source):
    from autograde.grader.static import analyse

    check = get_check(f"embeddings.{step}")
    report = analyse([(step, source)], [], [(check.step, check.function, (*check.forbidden, *check.forbidden_names))])
    assert report.forbidden[check.step].what.startswith("sklearn."), report.to_json()


def test_the_reference_table_refuses_an_odd_width_as_the_students_must():
    from autograde.reference.functional import sinusoidal_table

    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(4, 7)
