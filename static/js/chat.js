// Chatsite: the little the chat page needs beyond htmx and its websocket extension.
(function () {
  "use strict";

  function messages() { return document.getElementById("messages"); }

  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 120; }

  // A whole message swaps in by its id; one this tab does not have yet (sent from another tab,
  // or while the connection was down) is appended instead: every message frame is an upsert.
  document.addEventListener("htmx:oobErrorNoTarget", function (event) {
    var el = event.detail.content, list = messages();
    if (list && el && el.classList && el.classList.contains("message")) {
      list.appendChild(el);
      htmx.process(el);
    }
  });

  // Follow a streaming reply while the reader is at the bottom; leave them be if they scrolled up.
  var stick = true;
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var list = messages();
    stick = list ? nearBottom(list) : false;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var list = messages();
    if (list && stick) list.scrollTop = list.scrollHeight;
  });

  // The message box empties once its message is on the wire.
  document.addEventListener("htmx:wsAfterSend", function (event) {
    var form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("#composer");
    if (form && event.detail.elt === form) form.querySelector("textarea").value = "";
  });

  // Enter sends, Shift+Enter starts a new line.
  document.addEventListener("keydown", function (event) {
    var box = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && box.matches && box.matches("#composer textarea")) {
      event.preventDefault();
      if (box.value.trim()) box.form.requestSubmit();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var list = messages();
    if (list) list.scrollTop = list.scrollHeight;
  });
})();
