// "Download notebook" from a page opened from disk (file://). Chromium ignores
// the download attribute of a link to another file:// URL and opens the JSON
// instead; it does honour it for a blob: URL the page itself made. The build
// writes each notebook also as a script (notebooks/<name>.ipynb.js, see
// autograde/site/hooks.py) that hands its text to courseNotebook(); a <script>
// loads from file:// where fetch() may not. Over http the plain link is used.
(function () {
  var waiting = {};

  window.courseNotebook = function (name, text) {
    var done = waiting[name];
    delete waiting[name];
    if (done) done(text);
  };

  function save(name, text) {
    var url = URL.createObjectURL(new Blob([text], { type: "application/x-ipynb+json" }));
    var link = document.createElement("a");
    link.href = url;
    link.download = name + ".ipynb";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("a.nb-download[data-notebook]");
    if (!button || location.protocol !== "file:") return;
    event.preventDefault();
    var name = button.getAttribute("data-notebook");
    waiting[name] = function (text) { save(name, text); };
    var script = document.createElement("script");
    script.src = button.getAttribute("data-notebook-script");
    script.onload = script.onerror = function () {
      script.remove();
      if (waiting[name]) {           // the script did not load: fall back to the link
        delete waiting[name];
        location.href = button.href;
      }
    };
    document.head.appendChild(script);
  });
})();
