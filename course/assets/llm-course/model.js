// The course's reference model in the browser: a forward pass, the sampler
// and the generation loop, added to window.llmCourse (llm-course.js):
//
//   llmCourse.logits(ids)                 -> the last position's logits (an Array, vocab_size numbers)
//   llmCourse.generate(ids, {maxNewTokens, temperature, topK, topP, seed, greedy, stopId})
//                                         -> the new ids only (like Python's generate; maxNewTokens
//                                            defaults to 32, seed to 0, no stop id)
//   llmCourse.Generator(ids, options)     -> a loop to drive by hand: .step() -> {id, prefill, tokens},
//                                            .cache (the KV cache), .ids
//   llmCourse.model.forward(ids, {cache, record, allLogits}) -> {logits, attention}
//   llmCourse.model.newCache()           -> an empty KV cache ({layers, length, nbytes()})
//   llmCourse.sampling.distribution(logits, {temperature, topK, topP}) -> {base, probs}
//   llmCourse.sampling.rng(seed)         -> a function returning numbers in [0, 1)
//   llmCourse.matmul(x, Wt, T, I, O)     -> x (T, I) @ W as a Float32Array (T, O), W given as (O, I)
//
// Why plain JavaScript and not onnxruntime-web or transformers.js: the site
// must work offline and opened as files, where a page can neither fetch() a
// model file nor start the WebAssembly workers those runtimes load by URL
// (and they would add megabytes of runtime for a 1M-parameter model). The
// weights come from the checkpoint through a <script>, model-<hash>.js,
// written by `course build` (autograde/site/widgets.py); nothing is hand-copied.
//
// The forward pass is autograde/reference/functional.py written again for the
// reference architecture (RMSNorm, RoPE, grouped-query attention, SwiGLU,
// tied or untied unembedding; the export refuses any other checkpoint).
// Activations are stored as float32 and sums run in float64, so the logits
// agree with PyTorch's to about 1e-5 (tests/test_site_widgets.py checks 1e-4).
//
// The sampler follows autograde/reference/sampling.py: temperature, then top-k
// (ties: lower id first), then top-p (a token is kept while the probability
// ranked ahead of it is < p), then the softmax and a draw. The draw uses
// mulberry32, a small 32-bit generator: seed s (a whole number 0..2^32-1)
// always gives the same text here, but not torch's text for the same seed.
// Greedy decoding takes the highest logit (ties: the lowest id) and gives the
// same ids as `course generate --greedy`.
(function () {
  "use strict";

  var api = window.llmCourse = window.llmCourse || {};
  if (api.model) return;                       // loaded twice on one page
  var data = (window.llmCourseData || {}).model;

  function ModelError(message) {
    var error = new Error(message);
    error.name = "ModelError";
    return error;
  }

  function decodeWeights(base64) {
    var bytes;
    if (typeof Uint8Array.fromBase64 === "function") {
      bytes = Uint8Array.fromBase64(base64);     // newer browsers: native, several times faster
    } else {
      var text = atob(base64);
      bytes = new Uint8Array(text.length);
      for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    }
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);   // little-endian, as exported
  }

  function Model(data) {
    var c = data.config, all = decodeWeights(data.weights);
    this.cfg = c;
    this.sha256 = data.sha256;
    this.w = {};
    for (var i = 0; i < data.tensors.length; i++) {
      var t = data.tensors[i], size = t.shape.reduce(function (a, b) { return a * b; }, 1);
      this.w[t.name] = all.subarray(t.offset, t.offset + size);
    }
    this.C = c.d_model; this.H = c.n_head; this.G = c.n_kv_head; this.D = c.d_model / c.n_head;
    this.F = c.d_ff; this.V = c.vocab_size; this.window = c.max_seq_len;
    // rotation speed of each dimension pair, in float32 like rope_inv_freq
    this.invFreq = new Float64Array(this.D / 2);
    for (var p = 0; p < this.D / 2; p++) {
      this.invFreq[p] = Math.fround(1 / Math.fround(Math.pow(c.rope_theta, Math.fround(2 * p / this.D))));
    }
    this.unembed = c.tie_embeddings ? this.w.tok_emb : transpose(this.w.W_u, this.C, this.V);   // (V, C)
    // every (in, out) matrix of the blocks also transposed, (out, in), for matmul
    this.t = {};
    for (i = 0; i < data.tensors.length; i++) {
      var tensor = data.tensors[i];
      if (tensor.name.indexOf("blocks.") === 0 && tensor.shape.length === 2) {
        this.t[tensor.name] = transpose(this.w[tensor.name], tensor.shape[0], tensor.shape[1]);
      }
    }
  }

  function transpose(m, rows, cols) {
    var out = new Float32Array(rows * cols);
    for (var r = 0; r < rows; r++) for (var c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
    return out;
  }

  // x (T, I) @ W -> (T, O), with W given transposed, (O, I): each output is
  // the dot product of two contiguous rows, summed in float64. The loops walk
  // a 4 x 4 tile at a time (4 rows of x, 4 rows of Wt, 16 running sums), so
  // each number loaded from memory is used four times.
  function matmul(x, Wt, T, I, O) {
    var out = new Float32Array(T * O), t = 0, j, i;
    for (; t + 3 < T; t += 4) {
      var x0 = t * I, x1 = x0 + I, x2 = x1 + I, x3 = x2 + I;
      for (j = 0; j + 3 < O; j += 4) {
        var w0 = j * I, w1 = w0 + I, w2 = w1 + I, w3 = w2 + I;
        var s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        var s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
        for (i = 0; i < I; i++) {
          var a0 = x[x0 + i], a1 = x[x1 + i], a2 = x[x2 + i], a3 = x[x3 + i];
          var b0 = Wt[w0 + i], b1 = Wt[w1 + i], b2 = Wt[w2 + i], b3 = Wt[w3 + i];
          s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
          s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
          s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
          s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
        }
        var o = t * O + j;
        out[o] = s00; out[o + 1] = s01; out[o + 2] = s02; out[o + 3] = s03; o += O;
        out[o] = s10; out[o + 1] = s11; out[o + 2] = s12; out[o + 3] = s13; o += O;
        out[o] = s20; out[o + 1] = s21; out[o + 2] = s22; out[o + 3] = s23; o += O;
        out[o] = s30; out[o + 1] = s31; out[o + 2] = s32; out[o + 3] = s33;
      }
      for (; j < O; j++) for (var r = 0; r < 4; r++) out[(t + r) * O + j] = dot(x, (t + r) * I, Wt, j * I, I);
    }
    for (; t < T; t++) {                      // the last rows one at a time, 4 outputs per pass
      var xr = t * I;
      for (j = 0; j + 3 < O; j += 4) {
        var v0 = j * I, v1 = v0 + I, v2 = v1 + I, v3 = v2 + I, r0 = 0, r1 = 0, r2 = 0, r3 = 0;
        for (i = 0; i < I; i++) {
          var a = x[xr + i];
          r0 += a * Wt[v0 + i]; r1 += a * Wt[v1 + i]; r2 += a * Wt[v2 + i]; r3 += a * Wt[v3 + i];
        }
        out[t * O + j] = r0; out[t * O + j + 1] = r1; out[t * O + j + 2] = r2; out[t * O + j + 3] = r3;
      }
      for (; j < O; j++) out[t * O + j] = dot(x, xr, Wt, j * I, I);
    }
    return out;
  }

  // sum of a[ao + i] * b[bo + i] for i < n, in float64
  function dot(a, ao, b, bo, n) {
    var sum = 0;
    for (var i = 0; i < n; i++) sum += a[ao + i] * b[bo + i];
    return sum;
  }

  // x / sqrt(mean(x^2) + eps) * weight over each row of width C.
  function rmsNorm(x, weight, T, C, eps) {
    var out = new Float32Array(T * C);
    for (var t = 0; t < T; t++) {
      var s = 0;
      for (var i = 0; i < C; i++) s += x[t * C + i] * x[t * C + i];
      var scale = 1 / Math.sqrt(Math.fround(Math.fround(s / C) + eps));
      for (var j = 0; j < C; j++) out[t * C + j] = weight[j] * Math.fround(x[t * C + j] * scale);
    }
    return out;
  }

  // Rotate each (x_i, x_{i+D/2}) pair of every head by its position's angle.
  Model.prototype.rope = function (x, T, heads, start) {
    var D = this.D, half = D / 2;
    for (var t = 0; t < T; t++) {
      for (var p = 0; p < half; p++) {
        var angle = Math.fround((start + t) * this.invFreq[p]);
        var cos = Math.fround(Math.cos(angle)), sin = Math.fround(Math.sin(angle));
        for (var h = 0; h < heads; h++) {
          var at = (t * heads + h) * D + p, a = x[at], b = x[at + half];
          x[at] = a * cos - b * sin;
          x[at + half] = b * cos + a * sin;
        }
      }
    }
  };

  // An empty KV cache: per layer the keys and values of every position so
  // far, after RoPE and before the grouped-query sharing (n_kv_head heads).
  Model.prototype.newCache = function () {
    var n = this.cfg.n_layer, G = this.G, D = this.D;
    var cache = { layers: [], length: 0 };
    for (var l = 0; l < n; l++) cache.layers.push({ k: [], v: [] });   // one Float32Array(G * D) per position
    cache.nbytes = function () { return 2 * n * cache.length * G * D * 4; };
    cache.layerBytes = function () { return cache.length * G * D * 4; };   // K (or V) of one layer
    return cache;
  };

  // ids -> {logits, attention}. logits: the last position's (Float32Array V),
  // or every position's (T * V) with allLogits. With a cache, the ids follow
  // the cached positions and are appended to it. record: attention[layer][head]
  // is a Float32Array (T, S) of this call's attention weights.
  Model.prototype.forward = function (ids, options) {
    options = options || {};
    var C = this.C, H = this.H, G = this.G, D = this.D, F = this.F, V = this.V, w = this.w, wt = this.t;
    var cache = options.cache || null, past = cache ? cache.length : 0, T = ids.length, S = past + T;
    if (!T) throw ModelError("forward needs at least one token id");
    for (var n = 0; n < T; n++) {
      if (!Number.isInteger(ids[n]) || ids[n] < 0 || ids[n] >= V) {
        throw ModelError("token id " + ids[n] + " is not in the vocabulary (valid ids: 0.." + (V - 1) + ")");
      }
    }
    var x = new Float32Array(T * C);
    for (var t = 0; t < T; t++) x.set(w.tok_emb.subarray(ids[t] * C, ids[t] * C + C), t * C);
    var attention = options.record ? [] : null, group = H / G, scale = 1 / Math.sqrt(D);
    var scores = new Float64Array(S), nLayer = this.cfg.n_layer, eps = this.cfg.norm_eps;
    // Only the last position's logits wanted (and no attention map): the last
    // layer needs every position's keys and values but only the last query,
    // so its W_q, W_o and FFN run on one row (a fifth less work for 64 tokens).
    var lastOnly = !options.allLogits && !attention;

    for (var layer = 0; layer < nLayer; layer++) {
      var p = "blocks." + layer + ".";
      var first = lastOnly && layer === nLayer - 1 ? T - 1 : 0, rows = T - first;   // query rows: first..T-1
      var h = rmsNorm(x, w[p + "norm1.weight"], T, C, eps);
      var q = matmul(h.subarray(first * C), wt[p + "attn.W_q"], rows, C, H * D);
      var k = matmul(h, wt[p + "attn.W_k"], T, C, G * D);
      var v = matmul(h, wt[p + "attn.W_v"], T, C, G * D);
      this.rope(q, rows, H, past + first);
      this.rope(k, T, G, past);
      var keys = [], values = [];
      if (cache) { keys = cache.layers[layer].k; values = cache.layers[layer].v; }
      for (t = 0; t < T; t++) {
        keys.push(k.subarray(t * G * D, (t + 1) * G * D));
        values.push(v.subarray(t * G * D, (t + 1) * G * D));
      }
      var merged = new Float32Array(rows * H * D), maps = [];
      for (var head = 0; head < H; head++) {
        var g = Math.floor(head / group), weights = attention ? new Float32Array(T * S) : null;
        for (t = 0; t < rows; t++) {
          var qo = (t * H + head) * D, last = past + first + t, max = -Infinity, s, d;
          for (s = 0; s <= last; s++) {                        // causal: keys up to this position
            var key = keys[s], dot = 0;
            for (d = 0; d < D; d++) dot += q[qo + d] * key[g * D + d];
            scores[s] = Math.fround(Math.fround(dot) * scale);
            if (scores[s] > max) max = scores[s];
          }
          var total = 0;
          for (s = 0; s <= last; s++) { scores[s] = Math.exp(scores[s] - max); total += scores[s]; }
          var out = new Float64Array(D);
          for (s = 0; s <= last; s++) {
            var a = Math.fround(scores[s] / total), value = values[s];
            if (weights) weights[t * S + s] = a;
            for (d = 0; d < D; d++) out[d] += a * value[g * D + d];
          }
          merged.set(out, qo);
        }
        maps.push(weights);
      }
      if (attention) attention.push(maps);
      if (first) x = x.slice(first * C);                       // from here on, the query rows only
      var o = matmul(merged, wt[p + "attn.W_o"], rows, H * D, C);
      for (var i = 0; i < x.length; i++) x[i] += o[i];
      var h2 = rmsNorm(x, w[p + "norm2.weight"], rows, C, eps);
      var gate = matmul(h2, wt[p + "ffn.W_gate"], rows, C, F), up = matmul(h2, wt[p + "ffn.W_up"], rows, C, F);
      for (i = 0; i < gate.length; i++) gate[i] = gate[i] / (1 + Math.exp(-gate[i])) * up[i];   // silu(gate) * up
      var down = matmul(gate, wt[p + "ffn.W_down"], rows, F, C);
      for (i = 0; i < x.length; i++) x[i] += down[i];
    }
    if (cache) cache.length = S;

    var nRows = x.length / C, from = options.allLogits ? 0 : nRows - 1;
    var xf = rmsNorm(x.subarray(from * C), w["norm_f.weight"], nRows - from, C, eps);
    return { logits: matmul(xf, this.unembed, nRows - from, C, V), attention: attention };
  };

  // ----------------------------------------------------------------------
  // sampling

  // mulberry32: a 32-bit state, one multiply-xorshift per draw; numbers in [0, 1).
  function rng(seed) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
      throw ModelError("seed must be a whole number from 0 to 4294967295 (got " + seed + ")");
    }
    var state = seed >>> 0;
    return function () {
      state = (state + 0x6D2B79F5) >>> 0;
      var z = state;
      z = Math.imul(z ^ (z >>> 15), z | 1);
      z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
      return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
    };
  }

  function softmax(values) {
    var max = -Infinity, i, out = new Float64Array(values.length), total = 0;
    for (i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
    for (i = 0; i < values.length; i++) { out[i] = values[i] === -Infinity ? 0 : Math.exp(values[i] - max); total += out[i]; }
    for (i = 0; i < values.length; i++) out[i] /= total;
    return out;
  }

  // Token ids by probability, highest first; ties by the lower id (a stable sort).
  function ranked(values) {
    var order = Array.from(values.keys ? values.keys() : Object.keys(values), Number);
    order.sort(function (a, b) { return values[b] - values[a] || a - b; });
    return order;
  }

  function checkSampling(temperature, topK, topP) {
    if (!(temperature > 0) || !isFinite(temperature)) {
      throw ModelError("temperature must be a finite number > 0 (got " + temperature + "); use greedy for 'temperature 0'");
    }
    if (topK != null && (!Number.isInteger(topK) || topK < 1)) throw ModelError("topK must be a whole number >= 1 (got " + topK + ")");
    if (topP != null && !(topP > 0 && topP <= 1)) throw ModelError("topP must be in (0, 1] (got " + topP + ")");
  }

  // logits -> {base: softmax(logits / T) (before any cut), probs: what the
  // sampler draws from (cut tokens 0, the rest renormalized)}.
  function distribution(logits, options) {
    options = options || {};
    var temperature = options.temperature == null ? 1 : options.temperature;
    var topK = options.topK == null ? null : options.topK, topP = options.topP == null ? null : options.topP;
    checkSampling(temperature, topK, topP);
    var scaled = Float64Array.from(logits, function (l) { return Math.fround(l / temperature); });
    var base = softmax(scaled), i;
    if (topK != null && topK < scaled.length) {
      var order = ranked(scaled);
      for (i = topK; i < order.length; i++) scaled[order[i]] = -Infinity;
    }
    if (topP != null) {
      var probs = softmax(scaled), byProb = ranked(probs), before = 0;
      for (i = 0; i < byProb.length; i++) {
        var id = byProb[i], keep = before < topP;
        before += probs[id];
        if (!keep) scaled[id] = -Infinity;
      }
    }
    return { base: base, probs: softmax(scaled) };
  }

  function argmax(values) {
    var best = 0;
    for (var i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    return best;
  }

  // One draw: the first id whose cumulative probability passes u.
  function draw(probs, u) {
    var total = 0, last = 0;
    for (var i = 0; i < probs.length; i++) {
      if (probs[i] > 0) { total += probs[i]; last = i; if (u < total) return i; }
    }
    return last;
  }

  // ----------------------------------------------------------------------
  // the generation loop, with the context policy of sampling.generate

  function Generator(model, promptIds, options) {
    options = options || {};
    if (!promptIds || !promptIds.length) throw ModelError("the prompt is empty: give at least one token");
    this.model = model;
    this.ids = Array.from(promptIds, Number);
    this.greedy = !!options.greedy;
    this.options = { temperature: options.temperature == null ? 1 : options.temperature,
                     topK: options.topK == null ? null : options.topK,
                     topP: options.topP == null ? null : options.topP };
    if (!this.greedy) {
      checkSampling(this.options.temperature, this.options.topK, this.options.topP);
      this.random = rng(options.seed == null ? 0 : options.seed);
    }
    // stopId: an id or ids that end the text; none by default, like `course generate`
    this.stops = options.stopId == null ? [] : [].concat(options.stopId);
    this.start = Math.max(0, this.ids.length - model.window);   // the model's context is ids[start:]
    this.cache = null;
    this.done = false;
  }

  // One token: prefill when there is no cache (or the window was shifted),
  // else a decode step of one token. Returns {id, prefill, tokens, logits}.
  Generator.prototype.step = function () {
    var window = this.model.window, prefill = false, input;
    if (this.ids.length - this.start > window) {             // full: keep the newest half
      this.start = this.ids.length - Math.floor(window / 2);
      this.cache = null;
    }
    if (this.cache) {
      input = this.ids.slice(-1);
    } else {
      this.cache = this.model.newCache();
      input = this.ids.slice(this.start);
      prefill = true;
    }
    var logits = this.model.forward(input, { cache: this.cache }).logits;
    var id = this.greedy ? argmax(logits) : draw(distribution(logits, this.options).probs, this.random());
    this.ids.push(id);
    if (this.stops.indexOf(id) >= 0) this.done = true;
    return { id: id, prefill: prefill, tokens: input.length, logits: logits };
  };

  if (!data) return;
  var model;
  try {
    model = new Model(data);
  } catch (e) {
    api.modelError = e;
    return;
  }
  api.model = model;
  api.matmul = matmul;
  api.sampling = { distribution: distribution, rng: rng, softmax: softmax, argmax: argmax, draw: draw };
  api.Generator = function (ids, options) { return new Generator(model, ids, options); };
  api.logits = function (ids) { return Array.from(model.forward(Array.from(ids, Number)).logits); };
  api.generate = function (ids, options) {
    options = options || {};
    var n = options.maxNewTokens == null ? 32 : options.maxNewTokens;
    if (!Number.isInteger(n) || n < 0) throw ModelError("maxNewTokens must be a whole number >= 0 (got " + n + ")");
    var gen = new Generator(model, ids, options), out = [];
    while (out.length < n && !gen.done) out.push(gen.step().id);
    return out;
  };
})();
