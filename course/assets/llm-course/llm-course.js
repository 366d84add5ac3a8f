// window.llmCourse: the course's own model pieces in the browser, shared by the
// chapter widgets, the browser tests and readers at the console.
//
//   llmCourse.ready                      a promise, resolved with llmCourse
//   llmCourse.encode(text, {allowedSpecial})   -> token ids (like Python's encode)
//   llmCourse.encodeOrdinary(text)       -> token ids, special-token text as plain text
//   llmCourse.decode(ids)                -> text (bad UTF-8 becomes U+FFFD)
//   llmCourse.tokenizer.pieces(text, {allowedSpecial, ordinary}) -> one record per token
//
// The tokenizer is autograde/reference/tokenizer.py written again: the same
// regex pre-split (translated by autograde/site/widgets.py, which exports the
// data as assets/llm-course/tokenizer-data.js), the same byte-level BPE merges
// applied lowest rank first, the same special-token rule. The tests compare it
// with Python on hundreds of strings (tests/test_site_widgets.py).
(function () {
  "use strict";

  var encoder = new TextEncoder();
  var decoder = new TextDecoder("utf-8");                 // replaces bad bytes with U+FFFD
  var strict = new TextDecoder("utf-8", { fatal: true });

  function TokenizerError(message) {
    var error = new Error(message);
    error.name = "TokenizerError";
    return error;
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  function Tokenizer(data) {
    this.pattern = new RegExp(data.pattern, "gu");
    this.ranks = new Map();          // pair key -> new id (id order = rank)
    this.vocab = [];                 // id -> Uint8Array
    for (var b = 0; b < 256; b++) this.vocab.push(Uint8Array.of(b));
    var m = data.merges;
    for (var i = 0; i < m.length; i += 3) {
      var left = this.vocab[m[i]], right = this.vocab[m[i + 1]];
      if (!left || !right) throw TokenizerError("merge " + m[i] + ", " + m[i + 1] + " uses an undefined id");
      var joined = new Uint8Array(left.length + right.length);
      joined.set(left);
      joined.set(right, left.length);
      this.vocab[m[i + 2]] = joined;
      this.ranks.set(m[i] * 65536 + m[i + 1], m[i + 2]);
    }
    this.specialTokens = Object.assign({}, data.special_tokens);
    this.specialById = {};
    for (var text in this.specialTokens) this.specialById[this.specialTokens[text]] = text;
    this.vocabSize = data.vocab_size;
    this.cache = new Map();
  }

  // BPE inside one chunk: merge the lowest-rank pair present until none is left.
  Tokenizer.prototype.encodeChunk = function (bytes) {
    var ids = Array.from(bytes);
    while (ids.length >= 2) {
      var best = Infinity;
      for (var i = 0; i + 1 < ids.length; i++) {
        var rank = this.ranks.get(ids[i] * 65536 + ids[i + 1]);
        if (rank !== undefined && rank < best) best = rank;
      }
      if (best === Infinity) break;
      var merged = [];
      for (var j = 0; j < ids.length; j++) {
        if (j + 1 < ids.length && this.ranks.get(ids[j] * 65536 + ids[j + 1]) === best) {
          merged.push(best);
          j++;
        } else {
          merged.push(ids[j]);
        }
      }
      ids = merged;
    }
    return ids;
  };

  Tokenizer.prototype.encodeOrdinary = function (text) {
    checkText(text);
    var ids = [];
    var chunks = text.match(this.pattern) || [];
    for (var c = 0; c < chunks.length; c++) {
      var cached = this.cache.get(chunks[c]);
      if (!cached) {
        cached = this.encodeChunk(encoder.encode(chunks[c]));
        if (this.cache.size < 100000) this.cache.set(chunks[c], cached);
      }
      for (var k = 0; k < cached.length; k++) ids.push(cached[k]);
    }
    return ids;
  };

  // Like Python's encode(text, allowed_special=...): a special token's text that
  // is not allowed is an error, never silently the special id (token injection).
  Tokenizer.prototype.encode = function (text, options) {
    checkText(text);
    var allowedSpecial = (options && options.allowedSpecial) || [];
    var names = Object.keys(this.specialTokens);
    var allowed = allowedSpecial === "all" ? names : Array.from(allowedSpecial);
    var unknown = allowed.filter(function (s) { return names.indexOf(s) < 0; });
    if (unknown.length) throw TokenizerError("unknown special token(s) " + JSON.stringify(unknown) +
                                             "; this tokenizer has " + JSON.stringify(names));
    for (var n = 0; n < names.length; n++) {
      if (allowed.indexOf(names[n]) < 0 && text.indexOf(names[n]) >= 0) {
        throw TokenizerError("text contains the special token '" + names[n] + "', which is not allowed here; " +
                             "pass {allowedSpecial: ['" + names[n] + "']} to encode it as a special token, " +
                             "or use encodeOrdinary() to treat it as plain text");
      }
    }
    if (!allowed.length) return this.encodeOrdinary(text);
    var sorted = allowed.slice().sort(function (a, b) { return b.length - a.length; });
    var splitter = new RegExp("(" + sorted.map(escapeRegExp).join("|") + ")", "u");
    var ids = [], parts = text.split(splitter);
    for (var p = 0; p < parts.length; p++) {
      if (allowed.indexOf(parts[p]) >= 0) ids.push(this.specialTokens[parts[p]]);
      else if (parts[p]) ids.push.apply(ids, this.encodeOrdinary(parts[p]));
    }
    return ids;
  };

  Tokenizer.prototype.tokenBytes = function (id) {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw TokenizerError("token id " + id + " is not in the vocabulary (valid ids: 0.." + (this.vocabSize - 1) + ")");
    }
    if (id in this.specialById) return encoder.encode(this.specialById[id]);
    return this.vocab[id];
  };

  Tokenizer.prototype.decodeBytes = function (ids) {
    var parts = Array.from(ids, function (id) { return this.tokenBytes(Number(id)); }, this);
    var total = parts.reduce(function (n, p) { return n + p.length; }, 0);
    var out = new Uint8Array(total), at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  };

  Tokenizer.prototype.decode = function (ids) {
    return decoder.decode(this.decodeBytes(ids));
  };

  // One record per token of `text`, for display: its id, its bytes (hex), its
  // text when the bytes are whole characters, else the characters it is a part
  // of (`partOf`), and whether it is a special token.
  // options.ordinary: special-token text as plain text (encodeOrdinary).
  Tokenizer.prototype.pieces = function (text, options) {
    var ids = options && options.ordinary ? this.encodeOrdinary(text) : this.encode(text, options);
    var all = this.decodeBytes(ids);
    var starts = charStarts(all);   // byte offset -> index of the character starting there
    var records = [], at = 0;
    for (var i = 0; i < ids.length; i++) {
      var bytes = this.tokenBytes(ids[i]), end = at + bytes.length;
      var record = { id: ids[i], hex: hex(bytes), special: ids[i] in this.specialById, text: null, partOf: null };
      try {
        record.text = strict.decode(bytes);
      } catch (e) {
        var first = at, last = end;
        while (first > 0 && !starts.has(first)) first--;
        while (last < all.length && !starts.has(last)) last++;
        record.partOf = decoder.decode(all.subarray(first, last));
      }
      records.push(record);
      at = end;
    }
    return records;
  };

  function charStarts(bytes) {
    var starts = new Set();
    for (var i = 0; i < bytes.length; i++) if ((bytes[i] & 0xC0) !== 0x80) starts.add(i);
    return starts;
  }

  function hex(bytes) {
    return Array.from(bytes, function (b) { return b.toString(16).toUpperCase().padStart(2, "0"); }).join(" ");
  }

  function checkText(text) {
    if (typeof text !== "string") throw TokenizerError("encode expects a string, got " + typeof text);
  }

  // Small DOM helpers the widget scripts share (window.llmCourse.ui): a {key} template filler, an
  // element maker, and whitespace made visible inside a token (a space as a middle dot, a newline as ↵,
  // a tab as →).
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (all, key) { return key in values ? values[key] : all; });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function visible(text) {
    return text.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5").replace(/\r/g, "\u240d").replace(/\t/g, "\u2192");
  }

  var api = window.llmCourse = window.llmCourse || {};
  api.ui = api.ui || { fill: fill, el: el, visible: visible };
  var data = (window.llmCourseData || {}).tokenizer;
  if (data && !api.tokenizer) {
    var tok = new Tokenizer(data);
    api.tokenizer = tok;
    api.encode = tok.encode.bind(tok);
    api.encodeOrdinary = tok.encodeOrdinary.bind(tok);
    api.decode = tok.decode.bind(tok);
  }
  if (!api.ready) {
    api.ready = api.tokenizer ? Promise.resolve(api)
      : { then: function (ok, fail) {   // a thenable, so that a page without data logs no unhandled rejection
          return Promise.reject(new Error("the course tokenizer (tokenizer-data.js) did not load")).then(ok, fail);
        } };
  }
})();
