// Chatsite: "Copy" buttons and select-on-click fields for secrets shown once (no inline handlers:
// the Content-Security-Policy allows scripts from files only).
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    var field = target.closest("[data-select-on-click]");
    if (field) field.select();
    var button = target.closest("[data-copy]");
    if (button) {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.value).then(function () { button.textContent = "Copied"; });
      }
    }
  });
})();
