// bulkflow dashboard: plain DOM and fetch, no library, no build step.
// Everything the API returns goes into the page as text (textContent), never as HTML.
"use strict";

const KEY = "bulkflow.api_key";
const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let selected = null;     // the action shown in the detail panel
let logCursor = null;    // next page of its rows
let pollTimer = null;

function key() { return sessionStorage.getItem(KEY); }

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${key()}` },
    cache: "no-store",
    credentials: "omit",
  });
  if (response.status === 401) { forget(); throw new Error("the API key was refused"); }
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en"); }

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

// --- the actions list ----------------------------------------------------------------

async function refreshActions() {
  try {
    const body = await (await api("/v1/bulk-actions?limit=50")).json();
    renderActions(body.data);
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError(null);
    if (selected) await refreshDetail(false);
  } catch (error) { showError(error); }
}

function renderActions(actions) {
  const rows = actions.map((a) => {
    const tr = el("tr", null, "action");
    tr.dataset.actionId = a.id;
    tr.dataset.status = a.status;
    if (a.id === selected) tr.classList.add("selected");
    tr.append(el("td", new Date(a.created_at).toLocaleString()));
    tr.append(el("td", `${a.action} ${a.entity} (${a.source})`));
    tr.append(el("td", a.status, `status status-${a.status}`));
    const cell = el("td");
    const bar = el("progress");
    const percent = a.progress.percent === null ? 0 : a.progress.percent;
    bar.max = 100;
    bar.value = percent;
    bar.dataset.actionId = a.id;
    bar.setAttribute("aria-label", `progress of ${a.id}`);
    cell.append(bar, el("span", ` ${percent.toFixed(1)}%`, "percent"));
    tr.append(cell);
    tr.append(el("td", `${fmt(a.progress.processed)} / ${fmt(a.progress.total)}`));
    tr.addEventListener("click", () => select(a.id));
    return tr;
  });
  $("actions").tBodies[0].replaceChildren(...rows);
}

// --- one action --------------------------------------------------------------------------

async function select(id) {
  selected = id;
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  for (const tr of $("actions").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.actionId === id);
  }
  await refreshDetail(true);
}

async function refreshDetail(withLogs) {
  const id = selected;
  try {
    const action = await (await api(`/v1/bulk-actions/${id}`)).json();
    const stats = await (await api(`/v1/bulk-actions/${id}/stats`)).json();
    if (id !== selected) return;
    renderCounts(action, stats);
    renderReasons(stats);
    $("pause").disabled = action.status !== "running" && action.status !== "throttled";
    $("resume").disabled = action.status !== "paused";
    $("cancel").disabled = ["completed", "failed", "cancelled"].includes(action.status);
    if (withLogs) await loadLogs(null);
  } catch (error) { showError(error); }
}

function renderCounts(action, stats) {
  const items = [
    ["status", action.status],
    ["succeeded", fmt(action.counts.succeeded)],
    ["failed", fmt(action.counts.failed)],
    ["skipped", fmt(action.counts.skipped)],
    ["total rows", fmt(action.total_rows)],
    ["rows/s", action.progress.rows_per_second === null ? "–" : fmt(Math.round(action.progress.rows_per_second))],
    ["recorded in ClickHouse", fmt(stats.recorded_rows)],
    ["error", action.error ? `${action.error.code}: ${action.error.message}` : "–"],
  ];
  const nodes = [];
  for (const [name, value] of items) nodes.push(el("dt", name), el("dd", value));
  $("counts").replaceChildren(...nodes);
}

function renderReasons(stats) {
  const bars = [
    ...stats.top_failure_reasons.map((r) => ({ ...r, outcome: "failed" })),
    ...stats.top_skip_reasons.map((r) => ({ ...r, outcome: "skipped" })),
  ];
  const svg = $("reasons");
  const rowHeight = 22, labelWidth = 200, width = 700;
  svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(1, bars.length) * rowHeight + 4}`);
  const max = Math.max(1, ...bars.map((b) => b.rows));
  const nodes = bars.map((b, i) => {
    const g = document.createElementNS(SVG, "g");
    const y = i * rowHeight + 2;
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", "0"); label.setAttribute("y", String(y + 15));
    label.textContent = `${b.outcome}: ${b.reason}`;
    const rect = document.createElementNS(SVG, "rect");
    const w = Math.max(1, ((width - labelWidth - 80) * b.rows) / max);
    rect.setAttribute("x", String(labelWidth)); rect.setAttribute("y", String(y));
    rect.setAttribute("width", String(w)); rect.setAttribute("height", String(rowHeight - 6));
    rect.setAttribute("class", `bar-${b.outcome}`);
    const count = document.createElementNS(SVG, "text");
    count.setAttribute("x", String(labelWidth + w + 6)); count.setAttribute("y", String(y + 15));
    count.textContent = fmt(b.rows);
    g.append(label, rect, count);
    return g;
  });
  if (!nodes.length) {
    const none = document.createElementNS(SVG, "text");
    none.setAttribute("x", "0"); none.setAttribute("y", "15");
    none.textContent = "no failed or skipped rows";
    nodes.push(none);
  }
  svg.replaceChildren(...nodes);
}

async function loadLogs(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  const filters = { outcome: $("f-outcome").value, reason: $("f-reason").value.trim(),
                    row_from: $("f-from").value, row_to: $("f-to").value };
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  if (cursor) params.set("cursor", cursor);
  try {
    const body = await (await api(`/v1/bulk-actions/${selected}/logs?${params}`)).json();
    const rows = body.data.map((r) => {
      const tr = el("tr");
      for (const v of [r.row_no, r.outcome, r.operation, r.reason, r.message, r.key]) tr.append(el("td", v ?? ""));
      return tr;
    });
    $("logs").tBodies[0].replaceChildren(...rows);
    logCursor = body.next_cursor;
    $("next-page").disabled = !logCursor;
    $("page-note").textContent = `${rows.length} rows shown`;
    showError(null);
  } catch (error) { showError(error); }
}

async function control(change) {
  try {
    await api(`/v1/bulk-actions/${selected}/${change}`, { method: "POST" });
    await refreshActions();
  } catch (error) { showError(error); }
}

async function downloadFailedRows() {
  const include = $("include-skipped").checked ? "?include=skipped" : "";
  try {
    const blob = await (await api(`/v1/bulk-actions/${selected}/failed-rows.csv${include}`)).blob();
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${selected}-failed-rows.csv`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) { showError(error); }
}

// --- the key and the start ------------------------------------------------------------------

function forget() {
  sessionStorage.removeItem(KEY);
  clearInterval(pollTimer);
  $("main").hidden = true;
  $("forget").hidden = true;
  $("key-form").hidden = false;
}

function start() {
  $("key-form").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  refreshActions();
  clearInterval(pollTimer);
  pollTimer = setInterval(refreshActions, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    start();
  });
  $("forget").addEventListener("click", forget);
  $("log-filters").addEventListener("submit", (event) => { event.preventDefault(); loadLogs(null); });
  $("first-page").addEventListener("click", () => loadLogs(null));
  $("next-page").addEventListener("click", () => loadLogs(logCursor));
  $("pause").addEventListener("click", () => control("pause"));
  $("resume").addEventListener("click", () => control("resume"));
  $("cancel").addEventListener("click", () => control("cancel"));
  $("download").addEventListener("click", downloadFailedRows);
  if (key()) start(); else $("key-form").hidden = false;
});
