// Chatsite: attaching files to a message. The picker (Attach files) uploads through htmx; a file
// pasted into the message box or dropped on the chat goes through the same picker, so there is
// one way in (the server reads each file and answers with chips for the message box).
(function () {
  "use strict";

  function picker() { return document.querySelector("#composer input[data-attach]"); }

  function attach(files) {
    var input = picker();
    if (!input || !files || !files.length) return false;
    var chosen = new DataTransfer();
    Array.prototype.forEach.call(files, function (file) { chosen.items.add(file); });
    input.files = chosen.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  // A pasted screenshot or file; pasted text stays the browser's.
  document.addEventListener("paste", function (event) {
    if (!event.target.closest || !event.target.closest("#composer")) return;
    var files = event.clipboardData && event.clipboardData.files;
    if (files && files.length && attach(files)) event.preventDefault();
  });

  // Files dragged onto the chat.
  function carriesFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types || [], "Files") !== -1;
  }
  document.addEventListener("dragover", function (event) {
    var chat = event.target.closest && event.target.closest("#chat");
    if (!chat || !carriesFiles(event)) return;
    event.preventDefault();
    chat.classList.add("dropping");
  });
  document.addEventListener("dragleave", function (event) {
    var chat = event.target.closest && event.target.closest("#chat");
    if (chat && !chat.contains(event.relatedTarget)) chat.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    var chat = event.target.closest && event.target.closest("#chat");
    if (!chat) return;
    chat.classList.remove("dropping");
    if (event.dataTransfer && event.dataTransfer.files.length) {
      event.preventDefault();
      attach(event.dataTransfer.files);
    }
  });

  // Once uploaded, the picker is emptied (the same file can be picked again).
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt && event.detail.elt.matches && event.detail.elt.matches("input[data-attach]")) {
      event.detail.elt.value = "";
    }
  });
})();
