/* Small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  // Formset rows: "Add" clones the empty form; "Remove" ticks DELETE and hides the row.
  function totalFormsInput(table) {
    var prefix = table.dataset.prefix;
    return document.getElementById("id_" + prefix + "-TOTAL_FORMS");
  }

  function enhanceRemove(row) {
    var box = row.querySelector('input[type="checkbox"][name$="-DELETE"]');
    var button = row.querySelector(".js-remove-row");
    var label = row.querySelector(".remove-label");
    if (!box || !button) return;
    if (label) label.hidden = true;
    button.hidden = false;
    button.addEventListener("click", function () {
      box.checked = true;
      row.hidden = true;
    });
  }

  function initFormsets(root) {
    root.querySelectorAll(".js-add-row").forEach(function (button) {
      var table = document.getElementById(button.dataset.formset);
      var template = document.getElementById(button.dataset.template);
      if (!table || !template) return;
      button.hidden = false;
      table.querySelectorAll("tbody tr").forEach(enhanceRemove);
      button.addEventListener("click", function () {
        var total = totalFormsInput(table);
        var index = parseInt(total.value, 10);
        var html = template.innerHTML.replace(/__prefix__/g, String(index));
        var tbody = table.querySelector("tbody");
        tbody.insertAdjacentHTML("beforeend", html);
        total.value = String(index + 1);
        var row = tbody.lastElementChild;
        enhanceRemove(row);
        var first = row.querySelector("input[type=text]");
        if (first) first.focus();
      });
    });
  }

  // Diff view toggle: side by side <-> unified, without a reload.
  function initDiffToggles(root) {
    root.querySelectorAll("[data-diff]").forEach(function (block) {
      block.querySelectorAll("[data-diff-mode]").forEach(function (link) {
        link.addEventListener("click", function (event) {
          event.preventDefault();
          var mode = link.dataset.diffMode;
          block.querySelectorAll("[data-diff-view]").forEach(function (view) {
            view.hidden = view.dataset.diffView !== mode;
          });
          block.querySelectorAll("[data-diff-mode]").forEach(function (other) {
            var active = other.dataset.diffMode === mode;
            other.classList.toggle("active", active);
            other.setAttribute("aria-pressed", active ? "true" : "false");
          });
        });
      });
    });
  }

  // Destructive forms ask first.
  function initConfirms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initFormsets(document);
    initDiffToggles(document);
    initConfirms(document);
  });
})();
