"""Checks for notebook 2: cosine similarity, nearest neighbours in the reference model's embedding
table, the sinusoidal position table, and token plus position embeddings.

Fixed cases hold the extremes (a zero vector, vectors of length 1e-6, exact ties made of copies
scaled by powers of two, a query whose every other similarity is negative, an odd width, the last
position that fits); hidden cases draw shapes, values, query tokens and offsets from a seed chosen
at grading time. The nearest-neighbour cases pass the trained table itself (2048 x 128, 1 MiB).
"""
from __future__ import annotations

from functools import lru_cache

import torch

from autograde.checks.core import Case, Check, Verdict, compare_outputs, dtype_kept, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.reference.functional import sinusoidal_table

EPS = 1e-8                 # the default eps of cosine_similarity: each norm is clamped to at least this
NEAR_TIE = 1e-6            # two neighbours whose float64 cosines differ by less may come in either order
PE_ULPS = 4 * 2.0 ** -24   # per position: float32 rounds an angle of size P by about P * 2**-24

register_messages({
    "mistake_cos_dot_only": {
        "en": "this is the plain dot product a @ b.T: divide it by the two vectors' lengths",
        "ko": "내적 a @ b.T만 구했습니다: 두 벡터의 길이로 나누세요"},
    "mistake_cos_one_norm": {
        "en": "only one side was divided by its length: normalize the rows of a and the rows of b",
        "ko": "한쪽만 길이로 나눴습니다: a의 행과 b의 행을 모두 정규화하세요"},
    "mistake_cos_no_sqrt": {
        "en": "the lengths are missing their square root: ||v|| = sqrt(sum of v_i ** 2)",
        "ko": "길이에 제곱근이 빠졌습니다: ||v|| = sqrt(v_i ** 2의 합)입니다"},
    "mistake_cos_wrong_axis": {
        "en": "the norms were taken over the wrong axis: each row is a vector, so sum over the last "
              "dimension (dim=-1)",
        "ko": "노름을 엉뚱한 축으로 구했습니다: 행 하나가 벡터 하나이니 마지막 차원(dim=-1)으로 더하세요"},
    "mistake_cos_zero_nan": {
        "en": "a zero vector gave NaN (0 / 0): clamp each length to at least eps, v / max(||v||, eps), "
              "so that its cosine with anything is 0",
        "ko": "영벡터에서 NaN(0 / 0)이 나왔습니다: 길이를 eps 아래로 내려가지 않게 잘라 "
              "v / max(||v||, eps)로 나누면 영벡터의 코사인은 0이 됩니다"},
    "mistake_cos_eps_product": {
        "en": "eps was applied to the product of the lengths (||a|| ||b|| + eps, or its clamp): for short "
              "vectors that product is below eps and the cosine shrinks. Clamp each length on its own, "
              "max(||a||, eps) and max(||b||, eps)",
        "ko": "eps를 두 길이의 곱에 적용했습니다(||a|| ||b|| + eps, 또는 곱을 eps로 자르기): 짧은 벡터에서는 "
              "그 곱이 eps보다 작아져 코사인이 줄어듭니다. 길이마다 따로 max(||a||, eps), max(||b||, eps)로 자르세요"},
    "mistake_cos_rowwise": {
        "en": "this pairs row i of a with row i of b only: return every pair, an (N, M) matrix",
        "ko": "a의 i번째 행을 b의 i번째 행하고만 비교했습니다: 모든 쌍의 값을 담은 (N, M) 행렬을 돌려주세요"},
    "mistake_cos_no_transpose": {
        "en": "a @ b multiplies (N, C) by (M, C), which does not fit: every row of a meets every row of b in "
              "a @ b.T, (N, C) @ (C, M)",
        "ko": "a @ b는 (N, C)에 (M, C)를 곱하려 해서 모양이 맞지 않습니다: a의 모든 행과 b의 모든 행을 "
              "만나게 하려면 a @ b.T, 곧 (N, C) @ (C, M)입니다"},
    "mistake_cos_eps_ignored": {
        "en": "the eps argument was ignored (a fixed value was used instead): clamp each length with the eps "
              "the caller passes",
        "ko": "인자로 받은 eps를 쓰지 않고 고정된 값을 썼습니다: 호출한 쪽이 넘긴 eps로 길이를 자르세요"},
    "mistake_nn_includes_self": {
        "en": "the query token is among its own neighbours (its cosine with itself is 1): leave query_id out",
        "ko": "기준 토큰이 자기 이웃 목록에 들어 있습니다(자기 자신과의 코사인은 1): query_id는 빼세요"},
    "mistake_nn_least_similar": {
        "en": "these are the least similar tokens: sort by cosine from the highest down",
        "ko": "가장 덜 닮은 토큰들입니다: 코사인이 높은 것부터 내림차순으로 고르세요"},
    "mistake_nn_dot_product": {
        "en": "the neighbours were ranked by dot product, which favours long rows: rank them by cosine",
        "ko": "내적으로 순위를 매겨 긴 행이 유리해졌습니다: 코사인으로 순위를 매기세요"},
    "mistake_nn_ties": {
        "en": "tokens with exactly the same cosine came in the wrong order: ties go to the smaller id first "
              "(torch.sort(..., descending=True, stable=True) keeps them in id order)",
        "ko": "코사인이 정확히 같은 토큰들의 순서가 틀렸습니다: 값이 같으면 id가 작은 토큰이 먼저입니다 "
              "(torch.sort(..., descending=True, stable=True)는 같은 값을 id 순서대로 둡니다)"},
    "mistake_nn_k_minus_one": {
        "en": "one neighbour is missing: the query was dropped after taking the top k, so take the top k "
              "among the other tokens",
        "ko": "이웃이 하나 모자랍니다: 상위 k개를 고른 다음에 기준 토큰을 뺐기 때문입니다. 기준 토큰을 "
              "뺀 나머지에서 상위 k개를 고르세요"},
    "mistake_nn_k_plus_one": {
        "en": "one neighbour too many: return exactly k token ids (the query itself left out)",
        "ko": "이웃이 하나 더 많습니다: 기준 토큰을 뺀 토큰 id를 정확히 k개 돌려주세요"},
    "mistake_nn_k_bound": {
        "en": "your function refused k = V - 1 ({error}: {text}): with V rows there are V - 1 other tokens, and every "
              "one of them may be asked for; refuse only k < 1 or k > V - 1",
        "ko": "k = V - 1을 거부했습니다 ({error}: {text}): 행이 V개이면 기준 토큰 말고 V - 1개가 있고, 그 모두를 "
              "요청할 수 있습니다. k < 1이거나 k > V - 1일 때만 거부하세요"},
    "mistake_embed_bound_last": {
        "en": "your bound check refused positions that fit ({error}: {text}): start + T may equal the table's length, "
              "since the last position used is start + T - 1; refuse only start + T > len(pos_table)",
        "ko": "범위 검사가 표에 들어가는 위치까지 거부했습니다 ({error}: {text}): 마지막으로 쓰는 위치는 start + T - 1이므로 "
              "start + T가 표의 길이와 같아도 됩니다. start + T > len(pos_table)일 때만 거부하세요"},
    "mistake_pe_halves": {
        "en": "the sines and cosines were put in two halves ([sin | cos]): the table interleaves them, "
              "sin in the even columns 2i and cos in the odd columns 2i + 1",
        "ko": "사인과 코사인을 두 덩어리([sin | cos])로 나눠 놓았습니다: 표는 둘을 번갈아 놓습니다. "
              "짝수 열 2i에 sin, 홀수 열 2i + 1에 cos입니다"},
    "mistake_pe_swapped": {
        "en": "sine and cosine are swapped: sin goes in the even columns, cos in the odd ones",
        "ko": "사인과 코사인이 뒤바뀌었습니다: 짝수 열에 sin, 홀수 열에 cos를 넣으세요"},
    "mistake_pe_exponent": {
        "en": "the exponent used the column number instead of 2i: pair i (columns 2i and 2i + 1) uses "
              "10000 ** (2i / d), so both columns of a pair share one frequency",
        "ko": "지수에 2i 대신 열 번호를 썼습니다: 쌍 i(열 2i와 2i + 1)는 10000 ** (2i / d)를 쓰므로, 한 쌍의 "
              "두 열은 주파수가 같습니다"},
    "mistake_pe_odd_exponent": {
        "en": "the exponent is one off: pair i (columns 2i and 2i + 1) uses 10000 ** (2i / d), with the even column's "
              "number 2i, not 2i + 1 (torch.arange(0, d, 2))",
        "ko": "지수가 하나 어긋났습니다: 쌍 i(열 2i와 2i + 1)는 짝수 열의 번호 2i로 10000 ** (2i / d)를 씁니다. "
              "2i + 1이 아닙니다 (torch.arange(0, d, 2))"},
    "mistake_pe_multiplied": {
        "en": "the position was multiplied by 10000 ** (2i / d): divide by it (the frequencies go down "
              "from 1, they do not grow)",
        "ko": "위치에 10000 ** (2i / d)를 곱했습니다: 나눠야 합니다(주파수는 1에서 작아지지, 커지지 않습니다)"},
    "mistake_pe_from_one": {
        "en": "the positions start at 1: the first token is position 0, whose row is (0, 1, 0, 1, ...)",
        "ko": "위치를 1부터 셌습니다: 첫 토큰은 0번 위치이고, 그 행은 (0, 1, 0, 1, ...)입니다"},
    "mistake_embed_pos_by_token": {
        "en": "the position table was indexed with the token ids: row t of pos_table belongs to position "
              "t, so use the positions start, start + 1, ..., start + T - 1",
        "ko": "위치 표를 토큰 id로 골랐습니다: pos_table의 t번 행은 t번 위치의 것이니, "
              "start, start + 1, ..., start + T - 1 위치를 쓰세요"},
    "mistake_embed_ignores_start": {
        "en": "the positions restarted at 0: the first token of this call sits at position `start` "
              "(where the cache ends)",
        "ko": "위치가 0부터 다시 시작했습니다: 이번 호출의 첫 토큰은 `start` 위치(캐시가 끝나는 곳)에 있습니다"},
    "mistake_embed_no_positions": {
        "en": "the position vectors were not added: x = tok_emb[ids] + pos_table[positions]",
        "ko": "위치 벡터를 더하지 않았습니다: x = tok_emb[ids] + pos_table[positions]입니다"},
    "mistake_embed_concatenated": {
        "en": "the token and position vectors were concatenated: add them, so x keeps the width C",
        "ko": "토큰 벡터와 위치 벡터를 이어 붙였습니다: 더해야 x의 폭이 C로 유지됩니다"},
})


# ----------------------------------------------------------------------------
# 1. cosine similarity


def _cosine(a, b, eps=EPS, *, mistake=None):
    """(N, C), (M, C) -> (N, M); each row divided by max(its length, eps)."""
    if mistake == "dot_only":
        return a @ b.T
    if mistake == "rowwise":
        if a.shape != b.shape:
            raise ValueError("rowwise needs equal shapes")
        return (a * b).sum(-1) / (a.norm(dim=-1).clamp_min(eps) * b.norm(dim=-1).clamp_min(eps))
    axis_a = 0 if mistake in ("wrong_axis", "wrong_axis_a") else -1
    axis_b = 0 if mistake in ("wrong_axis", "wrong_axis_b") else -1
    na, nb = a.norm(dim=axis_a, keepdim=True), b.norm(dim=axis_b, keepdim=True)      # (N, 1), (M, 1)
    if mistake == "no_sqrt":
        na, nb = na ** 2, nb ** 2
    if mistake == "zero_nan":
        return (a / na) @ (b / nb).T
    if mistake == "eps_added":
        return a @ b.T / (na * nb.T + eps)
    if mistake == "eps_clamped":
        return a @ b.T / (na * nb.T).clamp_min(eps)
    if mistake == "only_a":
        return (a / na.clamp_min(eps)) @ b.T
    if mistake == "only_b":
        return a @ (b / nb.clamp_min(eps)).T
    return (a / na.clamp_min(eps)) @ (b / nb.clamp_min(eps)).T                  # (N, M)


def _variant(mistake):
    return lambda a, b, eps=EPS: _cosine(a, b, eps, mistake=mistake)


TOY_TABLE = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.2, 0.4], [-0.2, 0.9, 0.1], [0.1, -0.3, 0.9]])   # chapter 2


def _with_zero_row(x, row):
    x = x.clone()
    x[row] = 0
    return x


@register
class CosineSimilarity(Check):
    step = "embeddings.cosine_similarity"
    forbidden = ("torch.nn.functional.cosine_similarity", "torch.cosine_similarity",
                 "torch.nn.functional.normalize", "torch.nn.functional.pairwise_distance")
    # scikit-learn's and scipy's versions, refused by the grader's static pass by name (no import at each check)
    forbidden_names = ("sklearn.metrics.pairwise.cosine_similarity", "sklearn.metrics.pairwise.cosine_distances",
                       "sklearn.preprocessing.normalize", "scipy.spatial.distance.cdist", "scipy.spatial.distance.cosine",
                       "scipy.spatial.distance.pdist")
    mutants = {
        "mistake_cos_zero_nan": _variant("zero_nan"),
        "mistake_cos_dot_only": _variant("dot_only"),
        "mistake_cos_one_norm": [_variant("only_a"), _variant("only_b")],
        "mistake_cos_no_sqrt": _variant("no_sqrt"),
        "mistake_cos_wrong_axis": [_variant("wrong_axis"), _variant("wrong_axis_a"), _variant("wrong_axis_b")],
        "mistake_cos_eps_product": [_variant("eps_added"), _variant("eps_clamped")],
        "mistake_cos_rowwise": _variant("rowwise"),
        "mistake_cos_eps_ignored": lambda a, b, eps=EPS: _cosine(a, b),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            n, m, c = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((2, 9), (2, 12), (2, 40)))
            scale = float(torch.empty(1).uniform_(0.1, 20.0, generator=g))
            a, b = torch.randn(n, c, generator=g) * scale, torch.randn(m, c, generator=g) * scale
            zero_a, zero_b = int(torch.randint(0, n, (1,), generator=g)), int(torch.randint(0, m, (1,), generator=g))
            near = a.double() + 1e-5 * torch.randn(n, c, generator=g, dtype=torch.float64)
            big_eps = round(float(torch.cat([a, b]).norm(dim=-1).median()), 3)
            return [Case(f"random ({n}, {c}) and ({m}, {c}), scale {scale:.1f}", (a, b)),
                    Case(f"random, row {zero_a} of a and row {zero_b} of b are zero",
                         (_with_zero_row(a, zero_a), _with_zero_row(b, zero_b))),
                    Case(f"random ({c}, {n}).T and ({c}, {m}).T (not contiguous)",
                         (a.T.contiguous().T, b.T.contiguous().T)),
                    Case(f"random ({n}, {c}) * 1e-6 (short vectors)", (a * 1e-6 / scale, b * 1e-6 / scale)),
                    Case(f"float64 ({n}, {c}), against itself plus noise of 1e-5", (a.double(), near)),
                    Case(f"random, eps={big_eps:.3g} (about the median row length)", (a, b), {"eps": big_eps})]
        g = gen(21)
        a, b = torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g)
        near = torch.randn(2, 16, generator=g, dtype=torch.float64)
        return [Case("the chapter's toy table (4, 3) against itself", (TOY_TABLE, TOY_TABLE)),
                Case("[[3, 4]] and [[4, 3], [-3, 4], [-6, -8]]",
                     (torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0], [-3.0, 4.0], [-6.0, -8.0]]))),
                Case("random (3, 5) and (4, 5)", (a, b)),
                Case("random (3, 5) and (4, 5), row 1 of a and row 2 of b all zeros",
                     (_with_zero_row(a, 1), _with_zero_row(b, 2))),
                Case("random (3, 5) and (4, 5) times 1e-6 (lengths about 2e-6)", (a * 1e-6, b * 1e-6)),
                Case("(5, 3).T and (5, 4).T: transposed, not contiguous",
                     (a.T.contiguous().T, b.T.contiguous().T)),
                Case("float64 (2, 16), against itself plus noise of 1e-5",
                     (near, near + 1e-5 * torch.randn(2, 16, generator=g, dtype=torch.float64))),
                Case("eps=0.5: rows [[0.3, 0.4]] (length 0.5) and [[0.06, 0.08]] (length 0.1)",
                     (torch.tensor([[0.3, 0.4]]), torch.tensor([[0.06, 0.08]])), {"eps": 0.5})]

    def reference(self, a, b, eps=EPS):
        return _cosine(a, b, eps)

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict

    def explain_raised(self, case, error, text):
        a, b = case.args
        if error == "RuntimeError" and "cannot be multiplied" in text:
            return "mistake_cos_no_transpose"
        if error == "RuntimeError" and "must match the size" in text and a.shape[0] != b.shape[0]:
            return "mistake_cos_rowwise"
        return None


# ----------------------------------------------------------------------------
# 2. nearest neighbours


@lru_cache(maxsize=1)
def reference_table() -> torch.Tensor:
    """The trained reference model's token embedding table W_E, (V, C) float32."""
    from safetensors import safe_open

    from autograde.reference.checkpoint import REFERENCE_DIR, WEIGHTS_FILE

    with safe_open(str(REFERENCE_DIR / WEIGHTS_FILE), "pt") as f:
        return f.get_tensor("tok_emb")


@lru_cache(maxsize=1)
def reference_ids() -> dict[str, int]:
    """Token ids of a few whole words in the reference tokenizer, for readable case labels."""
    from autograde.reference.checkpoint import REFERENCE_DIR, TOKENIZER_FILE
    from autograde.reference.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.load(REFERENCE_DIR / TOKENIZER_FILE)
    return {word: tokenizer.encode(word)[0] for word in (" model", " 토큰", " is")}


def _neighbours(table, query_id, k, *, mistake=None):
    V = table.shape[0]
    if not 1 <= k <= V - 1:
        raise ValueError(f"k must be between 1 and {V - 1}, got {k}")
    q = table[query_id:query_id + 1]                                   # (1, C)
    sims = (q @ table.T)[0] if mistake == "dot_product" else _cosine(q, table)[0]   # (V,)
    if mistake == "least_similar":
        sims = -sims
    if mistake == "ties":                                              # argsort up, then flip
        order = torch.sort(sims, stable=True).indices.flip(0)
    else:
        order = torch.sort(sims, descending=True, stable=True).indices   # ties: smaller id first
    if mistake == "includes_self":
        return order[:k].tolist()
    if mistake == "k_minus_one":
        return [i for i in order[:k].tolist() if i != query_id]
    if mistake == "k_plus_one":
        return [i for i in order.tolist() if i != query_id][:k + 1]
    return [i for i in order.tolist() if i != query_id][:k]


def _tie_table():
    """Row 0 the query; row 2 a copy of it; rows 1, 3, 5 = v * 2, v * 0.5, v * 4 (exact ties);
    row 4 zeros; row 6 opposite to the query."""
    q, v = torch.tensor([1.0, 2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, -1.0, 2.0])
    return torch.stack([q, v * 2, q.clone(), v * 0.5, torch.zeros(4), v * 4, -q])


@register
class NearestNeighbours(Check):
    step = "embeddings.nearest_neighbours"
    depends = ("embeddings.cosine_similarity",)
    forbidden = CosineSimilarity.forbidden
    forbidden_names = CosineSimilarity.forbidden_names + ("sklearn.neighbors.NearestNeighbors",)
    mutants = {f"mistake_nn_{m}": (lambda m: lambda t, q, k: _neighbours(t, q, k, mistake=m))(m)
               for m in ("includes_self", "least_similar", "ties", "dot_product", "k_minus_one", "k_plus_one")}

    def cases(self, seed, hidden):
        table = reference_table()
        if hidden:
            g = gen(seed)
            q1, q2 = (int(x) for x in torch.randint(0, table.shape[0], (2,), generator=g))
            k1, k2 = (int(x) for x in torch.randint(3, 11, (2,), generator=g))
            small = torch.randn(9, 6, generator=g)
            small[int(torch.randint(1, 9, (1,), generator=g))] = small[0] * 2    # an exact tie with row 0's
            small[int(torch.randint(1, 9, (1,), generator=g))] = 0                # neighbours, and a zero row
            q3 = int(torch.randint(0, 9, (1,), generator=g))
            return [Case(f"reference table, token {q1}, k={k1}", (table, q1, k1)),
                    Case(f"reference table, token {q2}, k={k2}", (table, q2, k2)),
                    Case(f"random (9, 6) table with a doubled row and a zero row, token {q3}, k=8",
                         (small, q3, 8)),
                    Case("random (9, 6) table, k=9: there are only 8 other tokens", (small, q3, 9),
                         raises="ValueError"),
                    Case("random (9, 6) table, k=0: no neighbour asked for", (small, q3, 0), raises="ValueError")]
        ids = reference_ids()
        negative = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [-1.0, -0.3], [0.0, 0.0], [-0.5, -0.5]])
        return [Case(f"reference table, token {ids[' model']} (' model'), k=5", (table, ids[" model"], 5)),
                Case(f"reference table, token {ids[' 토큰']} (' 토큰'), k=8", (table, ids[" 토큰"], 8)),
                Case(f"reference table, token {ids[' is']} (' is'), k=1", (table, ids[" is"], 1)),
                Case("(7, 4) table: a copy of the query, three scaled copies of one row (ties), a zero row; k=4",
                     (_tie_table(), 0, 4)),
                Case("(7, 4) table, query 3, k=6 (every other token)", (_tie_table(), 3, 6)),
                Case("(5, 2) table whose only non-negative cosine is a zero row's 0; k=2", (negative, 0, 2)),
                Case("(7, 4) table, k=7: there are only 6 other tokens", (_tie_table(), 1, 7), raises="ValueError"),
                Case("(7, 4) table, k=0: k must be at least 1", (_tie_table(), 1, 0), raises="ValueError"),
                Case("(7, 4) table, k=-2: k must be at least 1", (_tie_table(), 1, -2), raises="ValueError")]

    def reference(self, table, query_id, k):
        return _neighbours(table, query_id, k)

    def explain_raised(self, case, error, text):
        table, _, k = case.args
        return "mistake_nn_k_bound" if k == table.shape[0] - 1 else None

    def judge(self, case, output):
        if isinstance(output, torch.Tensor) and output.dim() == 1 and not output.is_floating_point():
            output = output.tolist()
        if isinstance(output, tuple):
            output = list(output)
        near = None if case.raises else self._near_ties(case, output)
        if near is not None and near.passed:         # before the mutants: a near-tie swap may look like one
            return near
        verdict = super().judge(case, output)
        if verdict.passed or verdict.key.startswith("mistake_"):
            return verdict
        return near or verdict

    def _near_ties(self, case, output) -> Verdict | None:
        """Correct up to neighbours whose cosines differ by less than NEAR_TIE (float32 rounding may
        order those either way): a pass. Tokens with exactly the same cosine out of id order, or a
        larger id chosen over a smaller one of the same cosine: the ties mistake. Otherwise None."""
        table, query_id, k = case.args
        expected = self.reference(*case.args)
        if type(output) is not list or len(output) != k or any(type(i) is not int for i in output) \
                or len(set(output)) != k or query_id in output or not all(0 <= i < table.shape[0] for i in output):
            return None
        sims = _cosine(table[query_id:query_id + 1].double(), table.double())[0]       # (V,)
        if any(abs(float(sims[o] - sims[e])) > NEAR_TIE for o, e in zip(output, expected)):
            return None
        for value in {float(sims[i]) for i in output}:
            tied = [i for i in (sims == value).nonzero()[:, 0].tolist() if i != query_id]   # ascending ids
            chosen = [i for i in output if float(sims[i]) == value]
            if chosen != tied[:len(chosen)]:
                return Verdict(False, "mistake_nn_ties", {"where": case.label}, case.label)
        return Verdict(True, case=case.label)


# ----------------------------------------------------------------------------
# 3. the sinusoidal position table


def _pe(n_positions, dim, *, mistake=None):
    if dim % 2:
        raise ValueError(f"dim must be even (sin and cos come in pairs), got {dim}")
    if mistake == "multiplied":          # float32, as written: its angles reach P * 10000, where float64 disagrees
        pos, freq = torch.arange(n_positions).float()[:, None], 10000.0 ** (torch.arange(0, dim, 2).float() / dim)
        table = torch.zeros(n_positions, dim)
        table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        return table
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None] + (1 if mistake == "from_one" else 0)   # (P, 1)
    pair = torch.arange(0, dim, 2, dtype=torch.float64)                  # (C/2,) the even columns 2i
    if mistake == "exponent":
        pair = pair * 2
    elif mistake == "odd_exponent":
        pair = pair + 1
    angle = pos / 10000.0 ** (pair / dim)                                # (P, C/2)
    first, second = (torch.cos, torch.sin) if mistake == "swapped" else (torch.sin, torch.cos)
    if mistake == "halves":
        return torch.cat([first(angle), second(angle)], dim=-1).float()
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = first(angle), second(angle)
    return table.float()                                                  # (P, C)


@register
class SinusoidalEncoding(Check):
    step = "embeddings.sinusoidal_encoding"
    forbidden = ("autograde.reference.functional.sinusoidal_table", "autograde.reference.model.sinusoidal_table")
    # the same interleaved table, ready-made in transformers (by name only: importing those modules takes seconds)
    forbidden_names = tuple(f"transformers.models.{m}.modeling_{m}.{f}" for m in ("distilbert", "xlm", "flaubert")
                            for f in ("create_sinusoidal_embeddings", "_create_sinusoidal_embeddings"))
    mutants = {f"mistake_pe_{m}": (lambda m: lambda p, d: _pe(p, d, mistake=m))(m)
               for m in ("halves", "swapped", "exponent", "odd_exponent", "multiplied", "from_one")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            p = int(torch.randint(2, 600, (1,), generator=g))
            d = 2 * int(torch.randint(2, 48, (1,), generator=g))
            odd = 2 * int(torch.randint(1, 20, (1,), generator=g)) + 1
            return [Case(f"{p} positions, dim {d}", (p, d)), Case(f"7 positions, dim {odd} (odd)", (7, odd),
                                                                   raises="ValueError")]
        return [Case("4 positions, dim 8 (the chapter's table)", (4, 8)),
                Case("128 positions, dim 128 (the reference model's sizes)", (128, 128)),
                Case("50 positions, dim 2 (one pair)", (50, 2)),
                Case("1 position, dim 6", (1, 6)),
                Case("2048 positions, dim 16", (2048, 16)),
                Case("10 positions, dim 7 (odd)", (10, 7), raises="ValueError")]

    def reference(self, n_positions, dim):
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        return sinusoidal_table(n_positions, dim)

    def judge(self, case, output):
        verdict = self._judge_values(case, output)
        if verdict.passed and not case.raises and output.dtype != torch.float32:
            # the values compare equal across float dtypes: the table itself must be float32
            return Verdict(False, "wrong_dtype", {"expected": "torch.float32", "got": str(output.dtype)}, case.label)
        return verdict

    def _judge_values(self, case, output):
        verdict = super().judge(case, output)
        if verdict.passed or case.raises or verdict.key.startswith("mistake_") or verdict.key != "wrong_values":
            return verdict
        # float32 rounds an angle near P by about P * 2**-24: allow that much, measured against float64
        n_positions, dim = case.args
        exact = _exact_pe(n_positions, dim)                                   # (P, C) float64
        if _pe_close(output, exact, n_positions):
            return Verdict(True, case=case.label)
        return verdict

    def _matching(self, case, output):
        """The mistakes whose table the student's matches within the same position-scaled tolerance."""
        for key, mutant in self.mutants.items():
            try:
                wrong = mutant(*case.args)
            except Exception:
                continue
            if _pe_close(output, wrong, case.args[0]):
                yield key


def _pe_close(output, expected, n_positions) -> bool:
    """Within float32's rounding of angles up to n_positions (NaN is never close)."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.shape != expected.shape:
        return False
    diff = (output.detach().double().cpu() - expected.double()).abs()
    return bool(diff.numel() == 0 or float(diff.max()) <= 1e-5 + PE_ULPS * n_positions)


def _exact_pe(n_positions, dim):
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angle = pos / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return table


# ----------------------------------------------------------------------------
# 4. token plus position embeddings


def _embed(ids, tok_emb, pos_table, start=0, *, mistake=None):
    T = ids.shape[-1]
    if start + T > pos_table.shape[0]:
        raise ValueError(f"positions {start}..{start + T - 1} do not fit a table of {pos_table.shape[0]} rows")
    x = tok_emb[ids]                                                      # (B, T, C)
    if mistake == "no_positions":
        return x
    if mistake == "pos_by_token":
        return x + pos_table[ids]
    first = 0 if mistake == "ignores_start" else start
    pos = pos_table[first:first + T]                                      # (T, C)
    if mistake == "concatenated":
        return torch.cat([x, pos.expand_as(x)], dim=-1)                   # (B, T, 2C)
    return x + pos                                                        # (B, T, C)


@register
class EmbedWithPositions(Check):
    step = "embeddings.embed_with_positions"
    mutants = {f"mistake_embed_{m}": (lambda m: lambda *a: _embed(*a, mistake=m))(m)
               for m in ("pos_by_token", "ignores_start", "no_positions", "concatenated")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            V, C, P = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((8, 300), (2, 24), (8, 64)))
            B, T = int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(1, 8, (1,), generator=g))
            start = int(torch.randint(0, P - T + 1, (1,), generator=g))
            tok, pos = torch.randn(V, C, generator=g), torch.randn(P, C, generator=g)
            ids = torch.randint(0, V, (B, T), generator=g)
            return [Case(f"random ({B}, {T}) ids, V={V}, C={C}, P={P}, start={start}", (ids, tok, pos, start)),
                    Case(f"float64 tables, ({B}, {T}) ids, start=0", (ids, tok.double(), pos.double())),
                    Case(f"({B}, {T}) ids, start={P - T}: the last {T} positions of {P}", (ids, tok, pos, P - T)),
                    Case(f"({B}, {T}) ids, start={P - T + 1}: one position past the table",
                         (ids, tok, pos, P - T + 1), raises="ValueError")]
        g = gen(31)
        tok, pos = torch.randn(50, 8, generator=g), sinusoidal_table(16, 8)
        ids = torch.tensor([[3, 3, 7, 1], [0, 49, 3, 12]])
        tied = torch.randn(8, 50, generator=g)                           # W_U (C, V); W_E = W_U.T, not contiguous
        return [Case("(2, 4) ids (token 3 three times), V=50, C=8, 16 sinusoidal positions", (ids, tok, pos)),
                Case("the same ids, start=5 (a cache holds 5 tokens)", (ids, tok, pos, 5)),
                Case("the same ids, start=12: the last four positions", (ids, tok, pos, 12)),
                Case("(2, 1) ids, start=15: one new token at the last position", (ids[:, :1], tok, pos, 15)),
                Case("tok_emb = W_U.T (tied, not contiguous)", (ids, tied.T, pos, 2)),
                Case("float64 tables", (ids, tok.double(), pos.double(), 1)),
                Case("the same ids, start=13: positions 13..16 do not fit 16 rows", (ids, tok, pos, 13),
                     raises="ValueError")]

    def reference(self, ids, tok_emb, pos_table, start=0):
        return _embed(ids, tok_emb, pos_table, start)

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict

    def explain_raised(self, case, error, text):
        ids, pos_table = case.args[0], case.args[2]
        if error == "IndexError" and int(ids.max()) >= pos_table.shape[0]:    # pos_table[ids]: ids past P rows
            return "mistake_embed_pos_by_token"
        start = case.args[3] if len(case.args) > 3 else 0
        if error == "ValueError" and start + ids.shape[-1] == pos_table.shape[0]:   # the positions fit exactly
            return "mistake_embed_bound_last"
        return None
