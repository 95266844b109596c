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

  // Files on compose: drop them on the media area or paste a picture, and see each one
  // before sending. The chosen files live in the file input itself (a DataTransfer),
  // so the form posts them as it would without JavaScript.
  function attachFiles() {
    var input = document.getElementById("files");
    var zone = document.getElementById("drop-zone");
    var list = document.getElementById("file-previews");
    if (!input || !zone || !list || typeof DataTransfer === "undefined") return;
    document.body.classList.add("js");
    var chosen = new DataTransfer();

    function size(n) {
      return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
    }
    function render() {
      list.textContent = "";
      Array.prototype.forEach.call(chosen.files, function (file, i) {
        var item = document.createElement("li");
        item.className = "attached-file";
        if (file.type.indexOf("image/") === 0) {
          var img = document.createElement("img");
          img.alt = "";
          img.width = 64;
          img.height = 64;
          img.src = URL.createObjectURL(file);
          item.appendChild(img);
        } else {
          var icon = document.createElement("span");
          icon.className = "file-icon";
          icon.setAttribute("aria-hidden", "true");
          icon.textContent = (file.type.split("/")[1] || "file").toUpperCase();
          item.appendChild(icon);
        }
        var facts = document.createElement("span");
        facts.className = "file-facts";
        var name = document.createElement("strong");
        name.textContent = file.name;
        var note = document.createElement("small");
        note.textContent = size(file.size) + (file.type.indexOf("image/") === 0 && file.size > 614400
          ? " · will be shrunk to 600 KB or less" : "") + " · sent with the message";
        facts.appendChild(name);
        facts.appendChild(note);
        item.appendChild(facts);
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "secondary outline";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove " + file.name);
        remove.addEventListener("click", function () {
          var next = new DataTransfer();
          Array.prototype.forEach.call(chosen.files, function (f, j) { if (j !== i) next.items.add(f); });
          chosen = next;
          input.files = chosen.files;
          render();
          input.focus();
        });
        item.appendChild(remove);
        list.appendChild(item);
      });
    }
    function add(files) {
      Array.prototype.forEach.call(files, function (file) {
        var name = file.name || "pasted-picture." + ((file.type.split("/")[1]) || "png");
        chosen.items.add(file.name ? file : new File([file], name, { type: file.type }));
      });
      input.files = chosen.files;
      render();
    }
    input.addEventListener("change", function () {
      // A second pick adds to the first, as people expect from messaging apps.
      var picked = Array.prototype.slice.call(input.files);
      input.files = chosen.files;
      add(picked);
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
  }

  // Escape closes an open menu (a <details> dropdown) and gives focus back to its button.
  function closeMenusOnEscape() {
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      document.querySelectorAll("details.dropdown[open]").forEach(function (menu) {
        menu.removeAttribute("open");
        menu.querySelector("summary").focus();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    closeMenusOnEscape();
    counter();
    mediaRows();
    attachFiles();
  });
})();
