// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  function counter() {
    var text = document.querySelector("textarea[data-counter]");
    if (!text) return;
    var out = document.getElementById(text.dataset.counter);
    var max = parseInt(text.getAttribute("maxlength"), 10) || 1600;
    function update() {
      out.textContent = text.value.length + " / " + max + " characters";
      out.classList.toggle("over", text.value.length > max);
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
  });
})();
