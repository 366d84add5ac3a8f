// Render the \(...\) and \[...\] that pymdownx.arithmatex (generic: true)
// leaves in the page, with the vendored KaTeX.
(function () {
  function render(root) {
    renderMathInElement(root, {
      delimiters: [
        { left: "\\[", right: "\\]", display: true },
        { left: "\\(", right: "\\)", display: false },
      ],
      throwOnError: false,
    });
  }
  // Material's document$ emits on every page load (also with instant navigation)
  if (typeof document$ !== "undefined") document$.subscribe(function (doc) { render(doc.body); });
  else document.addEventListener("DOMContentLoaded", function () { render(document.body); });
})();
