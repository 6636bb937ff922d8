// Sortable tables: each <th data-sort> holds a <button>; Enter/Space/click sorts the table by
// that column (numbers by data-value), toggling ascending/descending, and announces it.
(function () {
  "use strict";
  function key(cell, numeric) {
    var v = cell.getAttribute("data-value");
    if (v === null) { v = cell.textContent.trim(); }
    if (!numeric) { return v.toLowerCase(); }
    var n = parseFloat(v);
    return isNaN(n) ? Infinity : n;
  }
  function sortBy(table, th) {
    var headers = table.querySelectorAll("thead th");
    var index = Array.prototype.indexOf.call(headers, th);
    var numeric = th.getAttribute("data-sort") === "number";
    var order = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return order === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", order);
    var status = document.getElementById(table.id + "-status");
    if (status) { status.textContent = "Sorted by " + th.textContent.trim() + ", " + order + "."; }
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-sort]").forEach(function (th) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortBy(table, th); }); }
    });
  });
})();
