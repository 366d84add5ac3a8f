// The widgets that run the reference model (model.js) on a chapter page:
//   .llmc-attention   the attention viewer (chapter 3)
//   .llmc-sampling    the next-token and sampling playground (chapter 5)
//   .llmc-generation  generation step by step: prefill, decode, the KV cache (chapter 7)
// Labels come from the page (autograde/site/labels.py via data-labels). Each
// widget marks itself .llmc-ready (data-ready-ms: since navigation start) and
// sets data-busy while a redraw is scheduled, which the browser tests wait on.
(function () {
  "use strict";

  var SPECIAL = "<|endoftext|>";
  // half of a surrogate pair: TextEncoder (and so the tokenizer) reads it as U+FFFD
  var LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
  var strict = new TextDecoder("utf-8", { fatal: true });

  var ui = window.llmCourse.ui, fill = ui.fill, el = ui.el, visible = ui.visible;   // llm-course.js

  function percent(p, lang) {
    return (100 * p).toLocaleString(lang, { maximumFractionDigits: p < 0.001 ? 3 : 1 }) + "%";
  }

  // A token as text to show: its characters (whitespace made visible), or its
  // bytes in hex when it is part of a character.
  function tokenText(tok, id) {
    var bytes = tok.tokenBytes(id);
    try {
      return visible(strict.decode(bytes));
    } catch (e) {
      return "<" + Array.from(bytes, function (b) { return b.toString(16).toUpperCase().padStart(2, "0"); }).join(" ") + ">";
    }
  }

  // The shared part of every widget: labels, the message line, the note with
  // its notebook link, a debounced redraw, and the ready mark.
  function Widget(root, api) {
    this.root = root;
    this.api = api;
    this.tok = api.tokenizer;
    this.L = JSON.parse(root.getAttribute("data-labels"));
    this.lang = document.documentElement.lang || "en";
    this.message = root.querySelector(".llmc-message");
    this.timer = null;
    var note = root.querySelector(".llmc-note"), parts = this.L.note.split("{notebook}");
    var link = el("a", "", this.L.notebook);
    link.href = root.getAttribute("data-notebook");
    note.append(parts[0], link, parts.slice(1).join(this.L.notebook), " " + this.L.console);
  }

  Widget.prototype.say = function (notes) {
    this.message.textContent = notes.join(" ");
    this.message.hidden = !notes.length;
  };

  // The ids of `text` as the model reads them: special-token text stays
  // ordinary text, an empty text has none, a text past the window keeps its end.
  Widget.prototype.prepare = function (text, notes) {
    if (!text.trim()) {
      notes.push(this.L.empty);
      return [];
    }
    var ids = this.tok.encodeOrdinary(text), window = this.api.model.window;
    var broken = text.match(LONE_SURROGATE);
    if (broken) notes.push(fill(this.L.invalid, { n: broken.length }));
    if (text.indexOf(SPECIAL) >= 0) notes.push(fill(this.L.special, { n: this.tok.encodeOrdinary(SPECIAL).length }));
    if (ids.length > window) {
      notes.push(fill(this.L.cut, { n: ids.length, window: window }));
      ids = ids.slice(-window);
    }
    return ids;
  };

  // Run fn soon (typing stays smooth); data-busy is set until it has run.
  Widget.prototype.later = function (fn, ms) {
    var self = this;
    clearTimeout(this.timer);
    this.root.setAttribute("data-busy", "");
    this.timer = setTimeout(function () { self.guard(fn); self.root.removeAttribute("data-busy"); }, ms == null ? 120 : ms);
  };

  // Any error becomes a message in the page's language, never a frozen widget.
  Widget.prototype.guard = function (fn) {
    try {
      fn.call(this);
    } catch (e) {
      this.say([fill(this.L.error, { error: e.message })]);
    }
  };

  Widget.prototype.ready = function () {
    this.root.classList.add("llmc-ready");
    this.root.setAttribute("data-ready-ms", Math.round(performance.now()));
  };

  // ----------------------------------------------------------------------
  // the attention viewer

  function attention(root, api) {
    var w = new Widget(root, api), L = w.L, model = api.model;
    var maxView = Number(root.getAttribute("data-max-view")) || 32;
    var input = root.querySelector(".llmc-input");
    var layerSel = root.querySelector(".llmc-layer"), headSel = root.querySelector(".llmc-head");
    var querySel = root.querySelector(".llmc-query");
    var heat = root.querySelector(".llmc-heat"), readsTitle = root.querySelector(".llmc-reads-title");
    var reads = root.querySelector(".llmc-reads");
    var state = { ids: [], maps: null, labels: [] };

    function options(select, n) {
      for (var i = 0; i < n; i++) select.append(new Option(String(i + 1), String(i)));
    }
    options(layerSel, model.cfg.n_layer);
    options(headSel, model.cfg.n_head);

    function compute() {
      var notes = [], ids = w.prepare(input.value, notes);
      if (ids.length > maxView) {
        notes.push(fill(L.too_many, { max: maxView, n: ids.length }));
        ids = ids.slice(0, maxView);        // a causal model's first rows do not see the rest: exact
      }
      w.say(notes);
      state.ids = ids;
      state.labels = ids.map(function (id) { return tokenText(w.tok, id); });
      state.maps = ids.length ? model.forward(ids, { record: true }).attention : null;
      querySel.replaceChildren();
      state.labels.forEach(function (text, n) { querySel.append(new Option((n + 1) + ": " + text, String(n))); });
      var bae = state.labels.findIndex(function (text) { return text.indexOf("배") >= 0; });
      querySel.value = String(bae >= 0 ? bae : ids.length - 1);
      draw();
    }

    function draw() {
      heat.replaceChildren();
      reads.replaceChildren();
      readsTitle.textContent = "";
      var T = state.ids.length;
      if (!T) return;
      var layer = Number(layerSel.value), head = Number(headSel.value), query = Number(querySel.value);
      var m = state.maps[layer][head];
      heat.style.setProperty("--llmc-n", T);
      var fragment = document.createDocumentFragment();
      for (var r = 0; r < T; r++) {
        var label = el("span", "llmc-heat-label", state.labels[r]);
        if (r === query) label.classList.add("llmc-heat-on");
        fragment.append(label);
        for (var c = 0; c < T; c++) {
          var cell = el("span", "llmc-heat-cell");
          if (c > r) {
            cell.classList.add("llmc-heat-masked");
          } else {
            var a = m[r * T + c];
            cell.style.background = "color-mix(in srgb, var(--llmc-heat) " + (100 * a).toFixed(1) + "%, transparent)";
            cell.title = fill(L.cell, { query: state.labels[r], key: state.labels[c], pct: percent(a, w.lang) });
            cell.setAttribute("data-row", r);
          }
          if (r === query) cell.classList.add("llmc-heat-on");
          fragment.append(cell);
        }
      }
      heat.append(fragment);
      readsTitle.textContent = fill(L.reads, { n: query + 1, token: state.labels[query], layer: layer + 1, head: head + 1 });
      var order = [];
      for (var k = 0; k <= query; k++) order.push(k);
      order.sort(function (x, y) { return m[query * T + y] - m[query * T + x] || x - y; });
      order.slice(0, 8).forEach(function (k) {
        var a = m[query * T + k], item = el("li", "llmc-read");
        var bar = el("span", "llmc-bar");
        bar.style.width = (100 * a).toFixed(1) + "%";
        item.append(el("span", "llmc-read-tok", (k + 1) + ": " + state.labels[k]), el("span", "llmc-bar-track"),
                    el("span", "llmc-read-pct", percent(a, w.lang)));
        item.children[1].append(bar);
        reads.append(item);
      });
    }

    heat.addEventListener("click", function (event) {
      var row = event.target.getAttribute && event.target.getAttribute("data-row");
      if (row !== null && row !== undefined) { querySel.value = row; w.guard(draw); }
    });
    input.addEventListener("input", function () { w.later(compute); });
    [layerSel, headSel, querySel].forEach(function (s) { s.addEventListener("change", function () { w.guard(draw); }); });
    w.guard(compute);
    w.ready();
  }

  // ----------------------------------------------------------------------
  // the next-token and sampling playground

  function sampling(root, api) {
    var w = new Widget(root, api), L = w.L, model = api.model;
    var input = root.querySelector(".llmc-input");
    var temp = root.querySelector(".llmc-temperature"), topK = root.querySelector(".llmc-top_k");
    var topP = root.querySelector(".llmc-top_p"), summary = root.querySelector(".llmc-summary");
    var body = root.querySelector(".llmc-dist tbody"), output = root.querySelector(".llmc-output");
    var seedBox = root.querySelector(".llmc-seed"), maxBox = root.querySelector(".llmc-max-new");
    var button = root.querySelector(".llmc-generate");
    var state = { ids: [], logits: null, notes: [], running: null };

    function settings() {
      var t = Number(temp.value), k = Number(topK.value), p = Number(topP.value);
      return { greedy: t === 0, temperature: t, topK: k > 0 ? k : null, topP: p < 1 ? p : null };
    }

    function compute() {
      state.notes = [];
      state.ids = w.prepare(input.value, state.notes);
      state.logits = state.ids.length ? model.forward(state.ids).logits : null;
      redraw();
    }

    function redraw() {
      var s = settings(), notes = state.notes.slice();
      root.querySelector(".llmc-temperature-value").textContent = s.temperature.toFixed(2);
      root.querySelector(".llmc-top_k-value").textContent = s.topK || L.off;
      root.querySelector(".llmc-top_p-value").textContent = Number(topP.value).toFixed(2);
      if (s.greedy) notes.push(L.greedy);
      else if (s.temperature < 0.1) notes.push(L.cold);
      if (!s.greedy && s.topP === null) notes.push(L.top_p_one);
      w.say(notes);
      body.replaceChildren();
      summary.textContent = "";
      if (!state.logits) return;
      var base, probs;
      if (s.greedy) {                                   // the limit T -> 0: all on the top token
        base = new Float64Array(state.logits.length);
        base[api.sampling.argmax(state.logits)] = 1;
        probs = base;
      } else {
        var d = api.sampling.distribution(state.logits, s);
        base = d.base; probs = d.probs;
      }
      var order = Array.from(base.keys()).sort(function (a, b) { return base[b] - base[a] || a - b; }).slice(0, 10);
      order.forEach(function (id) {
        var row = el("tr", probs[id] > 0 ? "" : "llmc-cut");
        row.append(el("td", "llmc-dist-tok", tokenText(w.tok, id)), barCell(base[id]),
                   probs[id] > 0 ? barCell(probs[id]) : el("td", "llmc-cut-label", L.cut_mark));
        body.append(row);
      });
      var kept = 0, mass = 0;
      for (var i = 0; i < probs.length; i++) if (probs[i] > 0) { kept++; mass += base[i]; }
      summary.textContent = fill(L.summary, { kept: kept.toLocaleString(w.lang), vocab: probs.length.toLocaleString(w.lang),
                                              mass: percent(mass, w.lang) });
    }

    function barCell(p) {
      var cell = el("td"), box = el("span", "llmc-dist-p"), track = el("span", "llmc-bar-track");
      var bar = el("span", "llmc-bar");
      bar.style.width = (100 * p).toFixed(1) + "%";
      track.append(bar);
      box.append(track, el("span", "llmc-read-pct", percent(p, w.lang)));
      cell.append(box);
      return cell;
    }

    // Sample token by token, one per animation tick, with the visible seed.
    function generate() {
      if (state.running) return;
      var seed = Number(seedBox.value), n = Number(maxBox.value), notes = state.notes.slice();
      if (seedBox.value === "" || !Number.isInteger(seed) || seed < 0 || seed > 4294967295) notes.push(L.bad_seed);
      if (maxBox.value === "" || !Number.isInteger(n) || n < 1 || n > 64) notes.push(L.bad_max);
      if (!state.ids.length) notes.push(L.empty);
      if (notes.length > state.notes.length) { w.say(notes); return; }
      var s = settings();
      var gen = api.Generator(state.ids, { greedy: s.greedy, temperature: s.temperature || 1, topK: s.topK,
                                           topP: s.topP, seed: seed });
      output.replaceChildren(el("span", "llmc-prompt", w.tok.decode(state.ids)));
      var made = [];
      root.setAttribute("data-busy", "");
      root.removeAttribute("data-generated");
      button.disabled = true;
      state.running = setInterval(function () {
        w.guard(function () {
          if (made.length < n) {
            var id = gen.step().id;
            made.push(id);
            output.append(el("span", "llmc-new llmc-c" + (made.length % 6), tokenText(w.tok, id)));
          }
        });
        if (made.length >= n || !state.running) finish();
      }, 30);

      function finish() {
        clearInterval(state.running);
        state.running = null;
        button.disabled = false;
        output.append(el("span", "llmc-gen-note", " " + fill(L.generated, { seed: seed, n: made.length })));
        root.setAttribute("data-generated", JSON.stringify(made));
        root.removeAttribute("data-busy");
      }
    }

    input.addEventListener("input", function () { w.later(compute); });
    [temp, topK, topP].forEach(function (s) { s.addEventListener("input", function () { w.guard(redraw); }); });
    button.addEventListener("click", function () { w.guard(generate); });
    w.guard(compute);
    w.ready();
  }

  // ----------------------------------------------------------------------
  // generation step by step: prefill, decode, the KV cache

  function generation(root, api) {
    var w = new Widget(root, api), L = w.L, model = api.model, cfg = model.cfg;
    var input = root.querySelector(".llmc-input"), status = root.querySelector(".llmc-status");
    var output = root.querySelector(".llmc-output"), body = root.querySelector(".llmc-cache tbody");
    var prefillButton = root.querySelector(".llmc-prefill"), stepButton = root.querySelector(".llmc-step");
    var resetButton = root.querySelector(".llmc-reset"), fillBar = root.querySelector(".llmc-fill div");
    var state = { gen: null, prompt: 0, steps: 0 };

    function bytes(n) { return n.toLocaleString(w.lang); }

    function table() {
      body.replaceChildren();
      var S = state.gen ? state.gen.cache.length : 0, G = cfg.n_kv_head, D = cfg.d_model / cfg.n_head;
      var per = S * G * D * 4;
      for (var l = 0; l < cfg.n_layer; l++) {
        var row = el("tr");
        [String(l + 1), G + " × " + S + " × " + D, G + " × " + S + " × " + D, bytes(2 * per)].forEach(function (t) {
          row.append(el("td", "", t));
        });
        body.append(row);
      }
      var total = el("tr", "llmc-total");
      [L.total, "", "", bytes(2 * per * cfg.n_layer)].forEach(function (t) { total.append(el("td", "", t)); });
      body.append(total);
      fillBar.style.width = (100 * S / model.window).toFixed(1) + "%";
      root.setAttribute("data-cache", JSON.stringify({ length: S, bytes: state.gen ? state.gen.cache.nbytes() : 0 }));
    }

    function show() {
      output.replaceChildren();
      if (!state.gen) return;
      state.gen.ids.forEach(function (id, n) {
        var fresh = n >= state.prompt;
        var span = el("span", fresh ? "llmc-new llmc-c" + (n % 6) : "llmc-prompt-tok", tokenText(w.tok, id));
        if (n === state.gen.ids.length - 1) span.classList.add("llmc-last");
        output.append(span);
      });
      root.setAttribute("data-ids", JSON.stringify(state.gen.ids.slice(state.prompt)));
    }

    function reset() {
      state.gen = null;
      state.steps = 0;
      status.textContent = "";
      w.say([]);
      stepButton.disabled = resetButton.disabled = true;
      prefillButton.disabled = false;
      root.removeAttribute("data-ids");
      show();
      table();
    }

    function full() {
      if (state.gen.cache.length < model.window) return false;
      w.say([fill(L.full, { window: model.window })]);
      stepButton.disabled = true;
      return true;
    }

    function prefill() {
      var notes = [], ids = w.prepare(input.value, notes);
      reset();
      w.say(notes);
      if (!ids.length) return;
      state.gen = api.Generator(ids, { greedy: true });
      state.prompt = ids.length;
      var t0 = performance.now(), out = state.gen.step();
      status.textContent = fill(L.prefilled, { n: out.tokens, ms: (performance.now() - t0).toFixed(1) });
      prefillButton.disabled = true;
      stepButton.disabled = resetButton.disabled = false;
      show();
      table();
      if (full()) w.say(notes.concat([fill(L.full, { window: model.window })]));
    }

    function step() {
      if (!state.gen || full()) return;
      var t0 = performance.now(), out = state.gen.step();
      state.steps++;
      status.textContent = fill(L.decoded, { step: state.steps, token: tokenText(w.tok, out.id),
                                             ms: (performance.now() - t0).toFixed(1), n: state.gen.cache.length });
      show();
      table();
      full();
    }

    prefillButton.addEventListener("click", function () { w.guard(prefill); });
    stepButton.addEventListener("click", function () { w.guard(step); });
    resetButton.addEventListener("click", function () { w.guard(reset); });
    input.addEventListener("input", function () { w.guard(reset); });
    w.guard(reset);
    w.ready();
  }

  var KINDS = { "llmc-attention": attention, "llmc-sampling": sampling, "llmc-generation": generation };

  function start() {
    Object.keys(KINDS).forEach(function (kind) {
      document.querySelectorAll("." + kind + ":not(.llmc-ready)").forEach(function (root) {
        var L = JSON.parse(root.getAttribute("data-labels"));
        function fail(error) {
          var msg = root.querySelector(".llmc-message");
          msg.textContent = fill(L.error, { error: error.message });
          msg.hidden = false;
        }
        window.llmCourse.ready.then(function (api) {
          if (!api.model) return fail(api.modelError || new Error("the course model (model-*.js) did not load"));
          try { KINDS[kind](root, api); } catch (e) { fail(e); }
        }, fail);
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
