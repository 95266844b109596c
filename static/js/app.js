// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  function counter() {
    var text = document.querySelector("textarea[data-counter]");
    if (!text) return;
    var out = document.getElementById(text.dataset.counter);
    var max = parseInt(text.dataset.max, 10) || 1600;
    function update() {
      // Characters as Plivo counts them: code points, so an emoji is one, not two.
      var length = Array.from(text.value).length;
      out.textContent = length > max
        ? length + " / " + max + " characters: " + (length - max) + " over"
        : length + " / " + max + " characters";
      out.classList.toggle("over", length > max);
    }
    text.addEventListener("input", update);
    update();
  }

  function mediaRows() {
    var box = document.getElementById("media-rows");
    var add = document.getElementById("add-media");
    var template = document.getElementById("media-row-template");
    if (!box || !add || !template) return;
    function renumber() {
      var rows = box.querySelectorAll(".media-row");
      rows.forEach(function (row, i) {
        var input = row.querySelector("input");
        var label = row.querySelector("label");
        input.id = "media-" + (i + 1);
        label.setAttribute("for", input.id);
        label.textContent = "Item " + (i + 1);
        row.querySelector(".remove-media").setAttribute("aria-label", "Remove item " + (i + 1));
      });
      add.disabled = rows.length >= 10;
    }
    add.addEventListener("click", function () {
      var row = template.content.firstElementChild.cloneNode(true);
      box.insertBefore(row, add);
      renumber();
      row.querySelector("input").focus();
    });
    box.addEventListener("click", function (event) {
      if (!event.target.classList.contains("remove-media")) return;
      var rows = box.querySelectorAll(".media-row");
      var row = event.target.closest(".media-row");
      if (rows.length > 1) { row.remove(); } else { row.querySelector("input").value = ""; }
      renumber();
      var first = box.querySelector(".media-row input");
      if (first) first.focus();
    });
    renumber();
  }

  // Files on compose: chosen, dropped or pasted, each is sent at once to
  // /media/upload with a progress bar, and what the server made of it (thumbnail,
  // final size, "resized from", metadata removed) or why it refused it replaces the
  // bar. The card carries the stored file into the form (a hidden field), so Send
  // posts no file twice. Without JavaScript the file input posts with the form.
  function attachFiles() {
    var input = document.getElementById("files");
    var zone = document.getElementById("drop-zone");
    var list = document.getElementById("file-previews");
    var attached = document.getElementById("attached");
    var form = document.getElementById("compose-form");
    if (!input || !zone || !list || !attached || !window.FormData || !window.XMLHttpRequest) return;
    document.body.classList.add("js");
    var token = form.querySelector("input[name=csrf_token]").value;
    var pending = 0;
    var send = form.querySelector("[type=submit]#submit");

    function size(n) {
      return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
    }
    function busy(change) {
      pending += change;
      if (send) send.setAttribute("aria-busy", pending ? "true" : "false");
    }
    var limitMb = parseInt(input.dataset.maxUploadMb, 10) || 0;
    function tooLarge(file) {
      return file.name + " is " + size(file.size) + ", larger than the " + limitMb +
        " MB limit for one upload. Choose a smaller file (pictures are shrunk for phones anyway).";
    }
    function refuse(message) {
      var card = document.createElement("li");
      card.className = "upload-error";
      var text = document.createElement("span");
      text.className = "field-error";
      text.setAttribute("role", "alert");
      text.textContent = message;
      card.appendChild(text);
      list.appendChild(card);
    }
    function upload(file) {
      if (limitMb && file.size > limitMb * 1048576) {
        refuse(tooLarge(file));  // said at once: no upload of a file the server refuses
        return;
      }
      var item = document.createElement("li");
      item.className = "attached-file uploading";
      var facts = document.createElement("span");
      facts.className = "file-facts";
      var name = document.createElement("strong");
      name.textContent = file.name;
      var bar = document.createElement("progress");
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute("aria-label", "Uploading " + file.name);
      var note = document.createElement("small");
      note.textContent = size(file.size) + " · uploading…";
      facts.appendChild(name);
      facts.appendChild(bar);
      facts.appendChild(note);
      item.appendChild(facts);
      list.appendChild(item);
      busy(1);
      var body = new FormData();
      body.append("file", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", input.dataset.uploadUrl);
      xhr.setRequestHeader("X-CSRFToken", token);
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) bar.value = Math.round(100 * event.loaded / event.total);
      });
      xhr.addEventListener("load", function () {
        busy(-1);
        var holder = document.createElement("template");
        var refused = xhr.status === 413 || xhr.status === 429 || !xhr.responseText.trim();
        holder.innerHTML = refused
          ? '<li class="upload-error"><span class="field-error" role="alert"></span></li>'
          : xhr.responseText;
        if (refused) {
          holder.content.querySelector("span").textContent = xhr.status === 429
            ? "Too many files at once: wait a minute, then choose " + file.name + " again."
            : limitMb ? tooLarge(file) : file.name + " is larger than this dashboard takes at once.";
        }
        var made = holder.content.querySelectorAll("li");
        Array.prototype.forEach.call(made, function (card) {
          (card.classList.contains("upload-error") ? list : attached).appendChild(card);
        });
        item.remove();
      });
      xhr.addEventListener("error", function () {
        busy(-1);
        note.textContent = "The upload broke off; choose the file again.";
        note.className = "field-error";
        bar.remove();
      });
      xhr.send(body);
    }
    function add(files) {
      Array.prototype.forEach.call(files, function (file) {
        var name = file.name || "pasted-picture." + ((file.type.split("/")[1]) || "png");
        upload(file.name ? file : new File([file], name, { type: file.type }));
      });
    }
    // Back after Send: the browser gives the typed fields back but not the files this
    // script attached, and Send then said "Add at least one picture". What was sent is
    // kept for this tab at Send; a page whose To comes back as it was sent gets its
    // attachments back and says plainly that it was sent (sending it again asks first).
    var SENT = "compose-last-sent";
    form.addEventListener("submit", function () {
      var key = form.querySelector("input[name=idempotency_key]");
      try {
        sessionStorage.setItem(SENT, JSON.stringify({
          recipients: form.querySelector("[name=recipients]").value,
          cards: attached.innerHTML, key: key ? key.value : "", at: Date.now()}));
      } catch (error) { /* storage off: Back behaves as before */ }
    });
    function restoreAfterBack() {
      var sent = null;
      try { sent = JSON.parse(sessionStorage.getItem(SENT) || "null"); } catch (error) { return; }
      var to = form.querySelector("[name=recipients]");
      if (!sent || !to || !to.value || to.value !== sent.recipients) return;
      if (document.getElementById("sent-already")) return;
      if (!attached.querySelector("input[name=uploaded]") && sent.cards) {
        attached.innerHTML = sent.cards;  // our own server's cards, kept by this tab
      }
      var note = document.createElement("p");
      note.id = "sent-already";
      note.className = "flash flash-info";
      note.setAttribute("role", "status");
      var minutes = Math.max(1, Math.round((Date.now() - sent.at) / 60000));
      note.textContent = "This message was sent " + minutes + " minute" + (minutes === 1 ? "" : "s") +
        " ago; its pictures are attached again. Sending it again asks first. ";
      if (sent.key) {
        var copy = document.createElement("a");
        copy.href = form.getAttribute("action") || window.location.pathname;
        copy.href += (copy.href.indexOf("?") < 0 ? "?" : "&") + "copy_send=" + encodeURIComponent(sent.key);
        copy.textContent = "Copy to a new message";
        note.appendChild(copy);
      }
      form.parentNode.insertBefore(note, form);
      var text = form.querySelector("[name=text]");
      if (text) text.dispatchEvent(new Event("input"));  // the character count follows
    }
    window.addEventListener("pageshow", restoreAfterBack);
    setTimeout(restoreAfterBack, 0);  // form values come back just after the load, in some browsers

    input.addEventListener("change", function () {
      var picked = Array.prototype.slice.call(input.files);
      input.value = "";  // sent already: the form must not post them again
      add(picked);
    });
    attached.addEventListener("change", function (event) {
      // "Remove" on a card: it goes at once (without JavaScript the box goes with Send)
      if (!event.target.matches("input[name=remove_upload]")) return;
      event.target.closest("li").remove();
      input.focus();
    });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) add(event.dataTransfer.files);
    });
    document.addEventListener("paste", function (event) {
      var items = (event.clipboardData && event.clipboardData.files) || [];
      var pictures = Array.prototype.filter.call(items, function (f) { return f.type.indexOf("image/") === 0; });
      if (!pictures.length) return;  // text pastes into the field as usual
      event.preventDefault();
      add(pictures);
    });
    form.addEventListener("submit", function (event) {
      if (pending) {  // Send while a file is still on its way: wait for it
        event.preventDefault();
        var wait = setInterval(function () {
          if (!pending) { clearInterval(wait); form.requestSubmit ? form.requestSubmit(send) : form.submit(); }
        }, 200);
      }
    });
  }

  // A form marked data-confirm (a destructive action) asks first, in a <dialog> that
  // says what will happen; "yes" sends the form with confirmed=yes. Without JavaScript
  // the server asks instead, on a page of its own (webapp/confirm.py).
  function confirmDestructive() {
    if (!window.HTMLDialogElement) return;  // the server's page asks instead
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.dataset || !form.dataset.confirm || form.querySelector("input[name=confirmed]")) return;
      event.preventDefault();
      var dialog = document.createElement("dialog");
      dialog.className = "confirm-dialog";
      dialog.setAttribute("aria-labelledby", "confirm-dialog-title");
      var article = document.createElement("article");
      var title = document.createElement("h2");
      title.id = "confirm-dialog-title";
      title.textContent = (form.dataset.confirmLabel || "Go ahead") + "?";
      var text = document.createElement("p");
      text.textContent = form.dataset.confirm;
      var footer = document.createElement("footer");
      var no = document.createElement("button");
      no.type = "button";
      no.className = "secondary outline";
      no.textContent = "No, go back";
      var yes = document.createElement("button");
      yes.type = "button";
      yes.className = "danger";
      yes.textContent = form.dataset.confirmLabel || "Yes";
      footer.appendChild(no);
      footer.appendChild(yes);
      article.appendChild(title);
      article.appendChild(text);
      article.appendChild(footer);
      dialog.appendChild(article);
      document.body.appendChild(dialog);
      no.addEventListener("click", function () { dialog.close(); });
      dialog.addEventListener("close", function () { dialog.remove(); });
      yes.addEventListener("click", function () {
        var sure = document.createElement("input");
        sure.type = "hidden";
        sure.name = "confirmed";
        sure.value = "yes";
        form.appendChild(sure);
        dialog.close();
        form.submit();
      });
      dialog.showModal();
      no.focus();  // the safe answer has the focus
    });
  }

  // Escape closes an open menu (a <details> dropdown) and gives focus back to its button.
  function closeMenusOnEscape() {
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      document.querySelectorAll("details.dropdown[open], details.phone-menu[open]").forEach(function (menu) {
        menu.removeAttribute("open");
        menu.querySelector("summary").focus();
      });
    });
  }

  // Idle sign-out: a warning before the session ends for want of activity, a button to
  // stay, and typing or clicking counting as activity (at most one request a minute).
  // Without JavaScript the session still ends on time; the sign-in page says why.
  function idleWarning() {
    var body = document.body;
    var idle = parseInt(body.dataset.idleSeconds, 10);
    var banner = document.getElementById("idle-warning");
    if (!idle || !banner) return;
    var token = body.dataset.csrf;
    // The server writes its "last seen" at most once a minute: count from a minute earlier.
    var seen = Date.now() - 60000;
    var warnFor = Math.min(120, idle / 4) * 1000;
    var left = banner.querySelector("[data-idle-left]");
    function keepAlive() {
      seen = Date.now();
      banner.hidden = true;
      fetch(body.dataset.keepAlive, {method: "POST", credentials: "same-origin",
        headers: {"X-CSRFToken": token, "Content-Type": "application/x-www-form-urlencoded"},
        body: "csrf_token=" + encodeURIComponent(token)}).then(function (response) {
        if (response.status === 401 || response.redirected) window.location.reload();
      });
    }
    ["keydown", "pointerdown"].forEach(function (kind) {
      document.addEventListener(kind, function (event) {
        if (event.target.closest && event.target.closest("#idle-warning")) return;
        if (Date.now() - seen > 60000) keepAlive();
      }, {passive: true});
    });
    banner.querySelector("[data-stay]").addEventListener("click", keepAlive);
    setInterval(function () {
      var remaining = idle * 1000 - (Date.now() - seen);
      if (remaining <= 0) { window.location.reload(); return; }
      if (remaining <= warnFor) {
        var seconds = Math.ceil(remaining / 1000);
        left.textContent = seconds > 60 ? Math.ceil(seconds / 60) + " minutes" : seconds + " seconds";
        banner.hidden = false;
      }
    }, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    closeMenusOnEscape();
    confirmDestructive();
    idleWarning();
    counter();
    mediaRows();
    attachFiles();
  });
})();
