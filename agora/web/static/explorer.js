// Agora explorer: sortable tables and the live block stream. No library, no other host.
"use strict";

function cellValue(row, index, numeric) {
  const text = row.children[index] ? row.children[index].textContent.trim() : "";
  if (numeric) { const n = Number(text.replace(/[^0-9.eE+-]/g, "")); return isNaN(n) ? -Infinity : n; }
  return text.toLowerCase();
}

function makeSortable(table) {
  const headers = table.querySelectorAll("thead th");
  headers.forEach((th, index) => {
    th.addEventListener("click", () => {
      const numeric = th.dataset.type === "num";
      const ascending = !th.classList.contains("sorted-asc");
      headers.forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
}

function startLiveStream(table) {
  if (!window.EventSource) { return; }
  const body = table.tBodies[0];
  const source = new EventSource("/v1/stream/blocks");
  source.addEventListener("block", (event) => {
    const block = JSON.parse(event.data);
    const row = document.createElement("tr");
    const height = document.createElement("td");
    const a = document.createElement("a");
    a.href = "/blocks/" + block.header.height;
    a.textContent = String(block.header.height);
    height.appendChild(a);
    const count = document.createElement("td");
    count.textContent = String(block.receipts.length);
    const time = document.createElement("td");
    time.textContent = String(block.header.timestamp);
    row.append(height, count, time);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 20) { body.deleteRow(body.rows.length - 1); }
    const head = document.getElementById("head-height");
    if (head) { head.textContent = String(block.header.height); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  const live = document.getElementById("live");
  if (live) { startLiveStream(live); }
});
