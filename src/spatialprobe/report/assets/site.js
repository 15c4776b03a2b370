// The results site of spatialprobe (python -m spatialprobe.report): tooltips, legend toggles, sortable tables,
// the config filter. No third-party code; the page's data come from its <script type="application/json" id="tips">.
(function () {
  "use strict";
  var tips = [];
  var source = document.getElementById("tips");
  if (source) { tips = JSON.parse(source.textContent || "[]"); }
  var tooltip = document.getElementById("tooltip");

  function showTip(el, x, y) {
    var rows = tips[Number(el.getAttribute("data-tip"))];
    if (!tooltip || !rows) { return; }
    var tbl = document.createElement("table");
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      var td = document.createElement("td");
      th.textContent = row[0];
      td.textContent = row[1];
      tr.appendChild(th);
      tr.appendChild(td);
      tbl.appendChild(tr);
    });
    tooltip.replaceChildren(tbl);
    tooltip.hidden = false;
    var left = x + 14 + window.scrollX, top = y + 14 + window.scrollY;
    var width = tooltip.offsetWidth;
    if (x + 14 + width > document.documentElement.clientWidth) { left = x - 14 - width + window.scrollX; }
    tooltip.style.left = left + "px";
    tooltip.style.top = top + "px";
  }
  function hideTip() { if (tooltip) { tooltip.hidden = true; } }

  document.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest && ev.target.closest("[data-tip]");
    if (el) { showTip(el, ev.clientX, ev.clientY); }
  });
  document.addEventListener("mouseout", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-tip]")) { hideTip(); }
  });
  document.addEventListener("focusin", function (ev) {
    var el = ev.target.closest && ev.target.closest("[data-tip]");
    if (el) { var r = el.getBoundingClientRect(); showTip(el, r.right, r.bottom); }
  });
  document.addEventListener("focusout", hideTip);

  document.addEventListener("click", function (ev) {
    var key = ev.target.closest && ev.target.closest(".legend .key");
    if (key) {
      var on = key.getAttribute("aria-pressed") !== "true";
      key.setAttribute("aria-pressed", on ? "true" : "false");
      var figure = key.closest("figure");
      figure.querySelectorAll("svg [data-trace]").forEach(function (g) {
        if (g.getAttribute("data-trace") === key.getAttribute("data-trace")) { g.classList.toggle("off", !on); }
      });
      hideTip();
      return;
    }
    var point = ev.target.closest && ev.target.closest("svg [data-href]");
    if (point) { window.location.href = point.getAttribute("data-href"); }
  });

  function sortValue(td) {
    var v = td ? td.getAttribute("data-v") : "";
    if (v === null) { v = td.textContent; }
    var n = Number(v);
    return v !== "" && !isNaN(n) ? { n: n } : { s: v.toLowerCase() };
  }
  function compare(a, b) {
    if (a.n !== undefined && b.n !== undefined) { return a.n - b.n; }
    if (a.n !== undefined) { return -1; }
    if (b.n !== undefined) { return 1; }
    return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(sortValue(r1.cells[col]), sortValue(r2.cells[col]));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); } });
    });
  });

  document.querySelectorAll("input.only-differs").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("table.config").forEach(function (t) { t.classList.toggle("only-differs", box.checked); });
    });
  });
})();
