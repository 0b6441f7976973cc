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

  // The message box empties once its message is on the wire, and gets the text (and the files
  // attached) back if the server refuses it: a refusal is a frame with a notice in it, an
  // accepted message a frame that empties the notice. Nothing typed is lost.
  var unconfirmed = null, unconfirmedFiles = [];
  document.addEventListener("htmx:wsAfterSend", function (event) {
    var form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("#composer");
    if (!form || event.detail.elt !== form) return;
    var box = form.querySelector("textarea"), tray = document.getElementById("attachment-tray");
    unconfirmed = box.value;
    box.value = "";
    unconfirmedFiles = tray ? Array.prototype.slice.call(tray.children) : [];
    unconfirmedFiles.forEach(function (chip) { chip.remove(); });
  });
  document.addEventListener("htmx:wsAfterMessage", function (event) {
    if (unconfirmed === null || String(event.detail.message).indexOf('id="composer-notice"') === -1) return;
    var notice = document.getElementById("composer-notice"), box = document.querySelector("#composer textarea");
    var tray = document.getElementById("attachment-tray");
    if (notice && notice.textContent.trim() && box && !box.value) {
      box.value = unconfirmed;
      box.dispatchEvent(new Event("input", { bubbles: true }));  // the box grows to fit it again
      if (tray && !tray.children.length) unconfirmedFiles.forEach(function (chip) { tray.appendChild(chip); });
    }
    unconfirmed = null;
    unconfirmedFiles = [];
  });

  // Enter sends, Shift+Enter starts a new line.
  document.addEventListener("keydown", function (event) {
    var box = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && box.matches && box.matches("#composer textarea")) {
      event.preventDefault();
      if (box.value.trim()) box.form.requestSubmit();
    }
  });

  // Edit opens a message in place: a box (from the message's template, so that the page holds
  // no second message box until then) with its text, until Save and send (the new version arrives
  // as the branch shown) or Cancel.
  function openEdit(article, text) {
    var form = article.querySelector(".edit-form");
    if (!form) {
      var template = article.querySelector("template.edit-template");
      if (!template) return;
      template.after(template.content.cloneNode(true));
      form = article.querySelector(".edit-form");
      htmx.process(form);
    }
    var box = form.querySelector("textarea");
    box.value = text;
    article.querySelector(".body").hidden = true;
    box.focus();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-edit], [data-edit-cancel]");
    var article = button && button.closest(".message");
    if (!article) return;
    if (button.hasAttribute("data-edit")) {
      openEdit(article, article.querySelector("textarea.raw").value);
      return;
    }
    article.querySelector(".edit-form").remove();
    article.querySelector(".body").hidden = false;
  });

  // The branch shown is sent whole when it changes (here or in another tab): a message being
  // edited that is still shown keeps its box and what was typed in it.
  var editing = {};
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    if (String(event.detail.message).indexOf('<div id="messages"') !== 0) return;
    editing = {};
    document.querySelectorAll("#messages .edit-form textarea").forEach(function (box) {
      editing[box.closest(".message").id] = box.value;
    });
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    Object.keys(editing).forEach(function (id) {
      var article = document.getElementById(id);
      if (article && !article.querySelector(".edit-form")) openEdit(article, editing[id]);
    });
    editing = {};
  });

  // A form that asks first (Delete): data-confirm holds the question.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Opened from a search result (#msg-<id>): show that message rather than the latest.
  document.addEventListener("DOMContentLoaded", function () {
    var list = messages(), target = location.hash.indexOf("#msg-") === 0 && document.getElementById(location.hash.slice(1));
    if (target) target.scrollIntoView({ block: "center" });
    else if (list) list.scrollTop = list.scrollHeight;
  });

  // The search box's results: ArrowDown/ArrowUp move between them (Enter opens one), Escape
  // closes them.
  document.addEventListener("keydown", function (event) {
    var box = document.getElementById("search-box"), results = document.getElementById("search-results");
    if (!box || !results || !event.target.closest || !event.target.closest(".search")) return;
    var links = Array.prototype.slice.call(results.querySelectorAll("a.search-hit"));
    var at = links.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!links.length) return;
      event.preventDefault();
      at = event.key === "ArrowDown" ? Math.min(at + 1, links.length - 1) : at - 1;
      (at < 0 ? box : links[at]).focus();
    } else if (event.key === "Escape") {
      results.innerHTML = "";
      box.focus();
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var box = document.getElementById("search-box");
    if (box && event.detail.target.id === "search-results") {
      box.setAttribute("aria-expanded", event.detail.target.children.length ? "true" : "false");
    }
  });
})();
