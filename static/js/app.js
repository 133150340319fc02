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

/* Click-to-comment on protocol diff lines (issue 14). In this file, not inline (the CSP
 * allows scripts from 'self' only) and not a file of its own (pages load exactly the two
 * scripts of base.html: tests/changes/test_ui_xss.py).
 *
 * Line-number cells of the change page's diff and of "Changes since your review" carry
 * data-line-anchor with data-part (system_prompt | body), data-side (new | old) and
 * data-line. Where the page has the thread form (#new-thread-form: the user may comment),
 * clicking one (or Enter/Space on it) moves the form under that line with part, side and
 * line filled in; "Cancel" puts it back. Threads opened on a line get a note under the
 * same line in the side-by-side diff, linking to the thread. Without this file the form
 * still takes a part, side and line by hand.
 */
(function () {
  "use strict";

  var PARTS = { system_prompt: "system prompt", body: "protocol body" };
  var SIDES = { "new": "proposed", old: "base" };

  function describe(el) {
    return (SIDES[el.dataset.side] || el.dataset.side) + " " +
      (PARTS[el.dataset.part] || el.dataset.part) + ", line " + el.dataset.line;
  }

  function rowOf(el) {
    return el.closest("tr") || el.closest("span.u-insert, span.u-equal") || el;
  }

  function initForm(form) {
    var home = document.createComment("thread form home");
    form.parentNode.insertBefore(home, form);
    var part = form.querySelector("#id_thread_part");
    var side = form.querySelector("#id_thread_side");
    var line = form.querySelector("#id_thread_line");
    var body = form.querySelector("#id_thread_body");
    var target = form.querySelector("[data-line-target]");
    var cancel = form.querySelector("[data-line-cancel]");
    var holder = null;
    var marked = null;

    function unmark() {
      if (marked) marked.classList.remove("line-targeted");
      marked = null;
    }

    function putBack() {
      home.parentNode.insertBefore(form, home.nextSibling);
      if (holder) holder.remove();
      holder = null;
      unmark();
      if (target) target.hidden = true;
      if (cancel) cancel.hidden = true;
      form.classList.remove("thread-form-inline");
    }

    function open(anchor) {
      if (holder) holder.remove();
      unmark();
      var row = rowOf(anchor);
      if (row.tagName === "TR") {
        holder = document.createElement("tr");
        holder.className = "diff-comment-row";
        var cell = document.createElement("td");
        cell.colSpan = row.children.length || 4;
        holder.appendChild(cell);
        row.parentNode.insertBefore(holder, row.nextSibling);
        cell.appendChild(form);
      } else {
        // a line of a <pre>: the form goes right after the block
        var pre = anchor.closest("pre") || row;
        holder = document.createElement("div");
        holder.className = "diff-comment-holder";
        pre.parentNode.insertBefore(holder, pre.nextSibling);
        holder.appendChild(form);
      }
      marked = row;
      marked.classList.add("line-targeted");
      if (part) part.value = anchor.dataset.part;
      if (side) side.value = anchor.dataset.side;
      if (line) line.value = anchor.dataset.line;
      if (target) {
        target.textContent = "Commenting on the " + describe(anchor) + ".";
        target.hidden = false;
      }
      if (cancel) cancel.hidden = false;
      form.classList.add("thread-form-inline");
      if (body) body.focus();
    }

    if (cancel) cancel.addEventListener("click", putBack);
    document.querySelectorAll("[data-line-anchor]").forEach(function (anchor) {
      anchor.classList.add("ln-commentable");
      anchor.setAttribute("role", "button");
      anchor.tabIndex = 0;
      anchor.title = "Comment on this line";
      anchor.setAttribute("aria-label", "Comment on the " + describe(anchor));
      anchor.addEventListener("click", function () { open(anchor); });
      anchor.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          open(anchor);
        }
      });
    });
  }

  function placeThreads() {
    document.querySelectorAll("article.thread[data-thread-part]").forEach(function (thread) {
      var selector = '.diff-table [data-line-anchor][data-part="' + thread.dataset.threadPart +
        '"][data-side="' + thread.dataset.threadSide + '"][data-line="' +
        thread.dataset.threadLine + '"]';
      var anchor = document.querySelector(selector);
      if (!anchor) return; // folded into "unchanged lines", or another version: listed below
      var row = anchor.closest("tr");
      var note = document.createElement("tr");
      note.className = "diff-thread-row";
      note.dataset.threadNote = thread.dataset.thread;
      var cell = document.createElement("td");
      cell.colSpan = row.children.length || 4;
      var link = document.createElement("a");
      link.href = "#" + thread.id;
      var first = thread.querySelector(".comment");
      var who = first ? first.querySelector("strong") : null;
      var text = first ? first.querySelector(".markdown") : null;
      var words = text ? text.textContent.replace(/\s+/g, " ").trim() : "";
      if (words.length > 140) words = words.slice(0, 139) + "…";
      var count = thread.querySelectorAll(".comment").length;
      link.textContent = "↳ Thread, " + (who ? who.textContent + ": " : "") + words +
        (count > 1 ? " (" + count + " comments)" : "");
      cell.appendChild(link);
      if (thread.classList.contains("thread-resolved")) cell.appendChild(tag("resolved", "tag-ok"));
      if (thread.hasAttribute("data-thread-blocking")) cell.appendChild(tag("blocking", "tag-warn"));
      if (thread.hasAttribute("data-thread-older")) cell.appendChild(tag("on older content", "tag-muted"));
      note.appendChild(cell);
      var after = row;
      while (after.nextElementSibling && after.nextElementSibling.classList.contains("diff-thread-row")) {
        after = after.nextElementSibling;
      }
      row.parentNode.insertBefore(note, after.nextSibling);
    });
  }

  function tag(text, css) {
    var span = document.createElement("span");
    span.className = "tag " + css;
    span.textContent = text;
    var wrap = document.createDocumentFragment();
    wrap.appendChild(document.createTextNode(" "));
    wrap.appendChild(span);
    return wrap;
  }

  function init() {
    placeThreads();
    var form = document.getElementById("new-thread-form");
    if (form) initForm(form);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
