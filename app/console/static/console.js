// supplymeter console: the Now page refreshes itself, asking only for what changed; a
// language choice submits itself. No framework: the page works without this file too.
"use strict";

function rowsShown(root) {
  const rows = {};
  root.querySelectorAll("[data-row]").forEach((el) => { rows[el.dataset.row] = el.dataset.digest; });
  return rows;
}

function apply(root, changed) {
  for (const [id, cells] of Object.entries(changed)) {
    const el = root.querySelector(`[data-row="${CSS.escape(id)}"]`);
    if (!el) continue;
    el.dataset.digest = cells.digest;
    el.querySelectorAll("[data-cell]").forEach((cell) => {
      if (cell.closest("[data-row]") !== el) return;
      const value = cells[cell.dataset.cell];
      if (value !== undefined) cell.textContent = value;
      const cls = cell.dataset.classCell && cells[cell.dataset.classCell];
      if (cls) cell.className = `state ${cls}`;
    });
    el.classList.add("changed");
  }
}

async function poll(root) {
  try {
    const response = await fetch(`/now/changes?page=${encodeURIComponent(root.dataset.page)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify({ rows: rowsShown(root) }),
      credentials: "same-origin",
    });
    if (response.status === 401) { window.location.href = "/login"; return; }
    if (!response.ok) return;
    const data = await response.json();
    apply(root, data.rows);
    const updated = document.getElementById("updated");
    if (updated) updated.textContent = data.updated;
    root.dataset.polls = String(Number(root.dataset.polls || 0) + 1);
  } catch (e) {
    // The network is down for a moment: the next poll tries again.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("now");
  if (root) {
    const every = Math.max(2, Number(root.dataset.refresh || 15)) * 1000;
    setInterval(() => poll(root), every);
  }
  document.querySelectorAll("select[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => el.form.submit());
  });
});
