// Chatsite: "Copy" buttons and select-on-click fields for secrets shown once (no inline handlers:
// the Content-Security-Policy allows scripts from files only). data-copy names the field whose
// value is copied (a secret, or a message's raw Markdown); data-copy-code copies the code block
// the button is in.
(function () {
  "use strict";

  function done(button) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = "Copied";
    // Named again once the reader moves on, ready for another copy.
    button.addEventListener("blur", function () { button.textContent = label; }, { once: true });
  }

  // The older way, for when the asynchronous clipboard is refused (a page without focus, an
  // insecure origin): copy a selection of the text, then put the focus back on the button.
  function copyBySelection(button, text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";  // out of sight and out of the layout (CSSOM: allowed by the CSP)
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (error) { ok = false; }
    area.remove();
    button.focus();
    if (ok) done(button);
  }

  function copied(button, text) {
    if (!navigator.clipboard) { copyBySelection(button, text); return; }
    navigator.clipboard.writeText(text).then(function () { done(button); },
                                             function () { copyBySelection(button, text); });
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
