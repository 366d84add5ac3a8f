// The tokenizer playground (chapter 1): the text box's tokens as coloured
// spans, their ids, the count and bytes per token, and the other language's
// example for comparison. Labels come from the page (autograde/site/labels.py
// via data-labels); the tokenizer from window.llmCourse (llm-course.js).
(function () {
  "use strict";

  var SPECIAL = "<|endoftext|>";

  var ui = window.llmCourse.ui, fill = ui.fill, el = ui.el, visible = ui.visible;   // llm-course.js

  function bytesPerToken(bytes, tokens, lang) {
    return tokens ? (bytes / tokens).toLocaleString(lang, { maximumFractionDigits: 2 }) : "–";
  }

  function setup(root, api) {
    var L = JSON.parse(root.getAttribute("data-labels"));
    var lang = document.documentElement.lang || "en";
    var maxChars = Number(root.getAttribute("data-max-chars")) || 2000;
    var input = root.querySelector(".llmc-input");
    var special = root.querySelector(".llmc-special");
    var showIds = root.querySelector(".llmc-show-ids");
    var stats = root.querySelector(".llmc-stats");
    var message = root.querySelector(".llmc-message");
    var list = root.querySelector(".llmc-tokens");
    var idsOut = root.querySelector(".llmc-ids code");
    var tok = api.tokenizer;
    var specialId = tok.specialTokens[SPECIAL];

    // the other language's example, counted once
    var other = root.getAttribute("data-other-example");
    var otherIds = tok.encodeOrdinary(other);
    root.querySelector(".llmc-compare").textContent = fill(L.compare, {
      text: other, tokens: otherIds.length,
      bpt: bytesPerToken(new TextEncoder().encode(other).length, otherIds.length, lang)});

    // the note, with its link to the notebook
    var note = root.querySelector(".llmc-note"), parts = L.note.split("{notebook}");
    var link = el("a", "", L.notebook);
    link.href = root.getAttribute("data-notebook");
    note.append(parts[0], link, parts.slice(1).join(L.notebook));

    function token(record, n) {
      var item = el("span", "llmc-tok llmc-c" + (n % 6));
      item.setAttribute("role", "listitem");
      item.tabIndex = 0;
      var shown, spoken;
      if (record.special) {
        item.classList.add("llmc-tok-special");
        shown = record.text;
        spoken = fill(L.special_label, { text: record.text, id: record.id });
      } else if (record.text === null) {            // part of a character: show its bytes
        item.classList.add("llmc-tok-bytes");
        shown = record.hex;
        spoken = fill(L.token_label, { n: n + 1, id: record.id,
                                       text: fill(L.bytes_of, { hex: record.hex, char: record.partOf.trim() }) });
      } else {
        shown = visible(record.text);
        spoken = fill(L.token_label, { n: n + 1, text: JSON.stringify(record.text), id: record.id });
      }
      if (record.special || record.text === null) item.title = spoken;   // hover: the character the bytes belong to
      item.setAttribute("aria-label", spoken);
      item.append(el("span", "llmc-tok-text", shown), el("span", "llmc-tok-id", String(record.id)));
      item.firstChild.setAttribute("aria-hidden", "true");
      item.lastChild.setAttribute("aria-hidden", "true");
      return item;
    }

    function render() {
      var text = input.value, notes = [];
      if (text.length > maxChars && Array.from(text).length > maxChars) {   // code points, not UTF-16 units
        text = Array.from(text).slice(0, maxChars).join("");
        notes.push(fill(L.too_long, { max: maxChars }));
      }
      var records;
      try {
        records = tok.pieces(text, special.checked ? { allowedSpecial: "all" } : { ordinary: true });
      } catch (e) {
        records = null;
        notes.push(fill(L.error, { error: e.message }));
      }
      list.replaceChildren();
      idsOut.textContent = "";
      if (!text) notes.push(L.empty);
      if (!special.checked && text.indexOf(SPECIAL) >= 0) {
        notes.push(fill(L.special_as_text, { n: tok.encodeOrdinary(SPECIAL).length, id: specialId }));
      }
      if (records) {
        var fragment = document.createDocumentFragment();
        records.forEach(function (r, n) { fragment.append(token(r, n)); });
        list.append(fragment);
        idsOut.textContent = "[" + records.map(function (r) { return r.id; }).join(", ") + "]";
        var bytes = new TextEncoder().encode(text).length;
        stats.textContent = fill(L.stats, { tokens: records.length, chars: Array.from(text).length, bytes: bytes,
                                            bpt: bytesPerToken(bytes, records.length, lang) });
      }
      message.textContent = notes.join(" ");
      message.hidden = !notes.length;
    }

    input.addEventListener("input", render);
    special.addEventListener("change", render);
    showIds.addEventListener("change", function () { root.classList.toggle("llmc-show-ids-on", showIds.checked); });
    render();
    root.classList.add("llmc-ready");
    root.setAttribute("data-ready-ms", Math.round(performance.now()));   // since navigation start
  }

  function start() {
    var roots = document.querySelectorAll(".llmc-tokenizer:not(.llmc-ready)");
    if (!roots.length) return;
    window.llmCourse.ready.then(function (api) {
      roots.forEach(function (root) { setup(root, api); });
    }, function (error) {
      roots.forEach(function (root) {
        var L = JSON.parse(root.getAttribute("data-labels"));
        var msg = root.querySelector(".llmc-message");
        msg.textContent = fill(L.error, { error: error.message });
        msg.hidden = false;
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
