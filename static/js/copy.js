// Chatsite: "Copy" buttons and select-on-click fields for secrets shown once (no inline handlers:
// the Content-Security-Policy allows scripts from files only). data-copy names the field whose
// value is copied (a secret, or a message's raw Markdown); data-copy-code copies the code block
// the button is in.
(function () {
  "use strict";

  function copied(button, text) {
    if (!navigator.clipboard) return;
    navigator.clipboard.writeText(text).then(function () {
      var label = button.getAttribute("data-label") || button.textContent;
      button.setAttribute("data-label", label);
      button.textContent = "Copied";
      // Named again once the reader moves on, ready for another copy.
      button.addEventListener("blur", function () { button.textContent = label; }, { once: true });
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    var field = target.closest("[data-select-on-click]");
    if (field) field.select();
    var button = target.closest("[data-copy]");
    if (button) {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (source) copied(button, source.value);
    }
    var code = target.closest("[data-copy-code]");
    if (code) copied(code, code.closest(".code-block").querySelector("code").textContent);
  });
})();
