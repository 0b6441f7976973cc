// Chatsite: the page's furniture. The drawer that Menu opens below 720 px, keyboard shortcuts,
// the message box that grows with its text, and Jump to latest. No inline handlers: the
// Content-Security-Policy allows scripts from files only.
(function () {
  "use strict";

  var PHONE = window.matchMedia("(max-width: 719.98px)");

  function $(id) { return document.getElementById(id); }

  // -- The drawer: the sidebar over the page. While it is open the rest of the page is inert
  // (focus stays in the drawer); closing gives focus back to Menu.
  function drawerOpen() { var layout = $("layout"); return !!layout && layout.classList.contains("drawer-open"); }

  function setDrawer(open, focusBack) {
    var layout = $("layout"), menu = $("menu-button");
    if (!layout || !menu) return;
    layout.classList.toggle("drawer-open", open);
    menu.setAttribute("aria-expanded", open ? "true" : "false");
    Array.prototype.forEach.call(document.querySelectorAll("#layout > main, #layout > .topbar"), function (el) {
      el.inert = open;
    });
    if (open) $("drawer-close").focus();
    else if (focusBack) menu.focus();
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    if (target.closest("#menu-button")) setDrawer(true);
    else if (target.closest("#drawer-close")) setDrawer(false, true);
    else if (drawerOpen() && target.id === "layout") setDrawer(false, true); // the shade beside it
    else if (drawerOpen() && target.closest("#sidebar a")) setDrawer(false); // a conversation chosen
  });
  // Wider than a phone, the sidebar is in the page again: nothing may stay inert.
  PHONE.addEventListener("change", function () { if (!PHONE.matches && drawerOpen()) setDrawer(false); });

  // -- Keyboard
  function streaming() { return !!document.querySelector("#messages .message[data-status='streaming']"); }

  function buttonNamed(root, name) {
    return Array.prototype.find.call(root.querySelectorAll("button"), function (b) {
      return (b.getAttribute("aria-label") || b.textContent).trim() === name;
    });
  }

  document.addEventListener("keydown", function (event) {
    var mod = event.ctrlKey || event.metaKey, key = event.key.toLowerCase();
    if (mod && event.shiftKey && key === "o") {
      var form = $("new-chat-form");
      if (form) { event.preventDefault(); form.requestSubmit(); }
    } else if (mod && !event.shiftKey && key === "k") {
      var box = $("search-box");
      event.preventDefault();
      if (!box) { window.location.assign("/search/"); return; }
      if (PHONE.matches && !drawerOpen()) setDrawer(true);
      box.focus();
      box.select();
    } else if (event.key === "Escape") {
      // Esc closes the innermost thing first: the search results (chat.js), then the drawer.
      var results = $("search-results");
      if (event.target.closest && event.target.closest(".search") && results && results.children.length) return;
      if (drawerOpen()) { setDrawer(false, true); return; }
      var stop = document.querySelector("#composer .stop");
      if (stop && streaming()) { event.preventDefault(); stop.click(); }
    } else if (event.key === "ArrowUp" && !mod && !event.shiftKey && !event.altKey
               && event.target.matches && event.target.matches("#composer textarea") && event.target.value === "") {
      // Up in an empty box edits the last question, as in a terminal.
      var mine = document.querySelectorAll("#messages .message.user");
      var edit = mine.length && buttonNamed(mine[mine.length - 1], "Edit");
      if (edit) { event.preventDefault(); edit.click(); }
    }
  }, true); // before chat.js's keys, which empty the search results on Esc

  // -- The message box grows with its text: CSS field-sizing where the browser has it.
  if (!(window.CSS && CSS.supports("field-sizing", "content"))) {
    document.addEventListener("input", function (event) {
      var box = event.target;
      if (!box.matches || !box.matches("#composer textarea")) return;
      box.style.height = "auto";
      box.style.height = box.scrollHeight + 2 + "px";
    });
  }

  // -- Jump to latest: while the reader is scrolled up from the newest message.
  function updateJump() {
    var list = $("messages"), jump = $("jump-latest");
    if (!list || !jump) return;
    jump.hidden = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  }
  document.addEventListener("scroll", function (event) { if (event.target.id === "messages") updateJump(); }, true);
  document.addEventListener("htmx:wsAfterMessage", updateJump);
  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest("#jump-latest")) return;
    var list = $("messages");
    list.scrollTop = list.scrollHeight;
    updateJump();
    var box = document.querySelector("#composer textarea");
    if (box) box.focus(); // the button hides: focus goes where the reader will type next
  });
})();
