// Semantic console: progress of background jobs, the explorer's map and neighbours, and the
// live numbers of the migration page. No framework; user content only ever goes through
// textContent, never innerHTML.
"use strict";

const BASE = document.querySelector('meta[name="console-base"]')?.content || "/admin/vector-search";
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";

// Bidirectional overrides and isolates shown as [U+202E], as the pages do (views.visible_controls).
function visibleControls(text) {
  return text.replace(/[\u202A-\u202E\u2066-\u2069]/g,
                      (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = visibleControls(String(text));
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { "X-CSRF-Token": CSRF } });
  if (!(response.headers.get("content-type") || "").includes("json")) {
    // A page instead of data: the session ended and the sign-in page answered.
    throw new Error(response.redirected ? "the session has ended: reload the page and sign in again"
                                        : `unexpected answer (HTTP ${response.status}): reload the page`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || body.error || response.statusText);
  return body;
}

// --- background jobs (heal, reindex, rollback, replay) ------------------------------------
function watchJob() {
  const id = new URLSearchParams(location.search).get("job");
  const panel = document.getElementById("job");
  if (!id || !panel || !/^[0-9a-f]{12}$/.test(id)) return;
  panel.hidden = false;
  const show = (job) => {
    panel.querySelector("[data-job-action]").textContent = job.action;
    panel.querySelector("[data-job-state]").textContent = job.state;
    panel.querySelector("[data-job-seconds]").textContent = job.seconds;
    panel.dataset.state = job.state;
    const out = job.error ? "error: " + job.error : JSON.stringify(job.result || {}, null, 2);
    panel.querySelector("[data-job-result]").textContent = job.state === "running" ? "" : out;
  };
  const poll = async () => {
    try {
      const job = await getJSON(`${BASE}/jobs/${id}`);
      show(job);
      if (job.state === "running") setTimeout(poll, 700);
      else refreshLive();
    } catch (error) {
      panel.querySelector("[data-job-state]").textContent = "unknown: " + error.message;
    }
  };
  poll();
}

// --- live numbers: build progress and heal backlog --------------------------------------
async function refreshLive() {
  const live = document.getElementById("live");
  if (!live) return;
  try {
    const stats = await getJSON(`/api/semantic/stats?all_tenants=${live.dataset.allTenants || "true"}`);
    const backlog = stats.healBacklog || {};
    live.querySelector("[data-live-missing]").textContent = backlog.missing || "0";
    live.querySelector("[data-live-stale]").textContent = backlog.stale || "0";
    const building = (stats.spaces || []).filter((s) => s.state === "SPACE_STATE_BUILDING");
    live.querySelector("[data-live-builds]").textContent = building.length
      ? building.map((s) => `space ${s.id}: ${s.build?.nodesDone || 0}/${s.build?.nodesTotal || 0}`).join(", ")
      : "none";
    live.dataset.updated = new Date().toISOString();
  } catch (error) {
    live.querySelector("[data-live-builds]").textContent = "unavailable: " + error.message;
  }
}

function watchLive() {
  if (!document.getElementById("live")) return;
  refreshLive();
  setInterval(refreshLive, 2000);
}

// --- explorer ------------------------------------------------------------------------------
const PALETTE = ["#2457c5", "#c54a24", "#1f7a3d", "#8a3fc5", "#c5a124", "#24a6c5", "#c52486", "#5b6673"];

function explorer() {
  const data = document.getElementById("points");
  const svg = document.getElementById("map");
  if (!data || !svg) return;
  const payload = JSON.parse(data.textContent || "{}");
  const points = payload.points || [];
  const types = [...new Set(points.map((p) => p.contentType || ""))].sort();
  const colour = (t) => PALETTE[types.indexOf(t) % PALETTE.length];
  const legend = document.getElementById("legend");
  for (const t of types) {
    const item = el("span", t || "(none)");
    item.style.setProperty("--dot", colour(t));
    legend.appendChild(item);
  }
  const xs = points.map((p) => p.x || 0), ys = points.map((p) => p.y || 0);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const W = 1000, H = 560, pad = 20;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const sx = (x) => pad + ((x - minX) / (maxX - minX || 1)) * (W - 2 * pad);
  const sy = (y) => H - pad - ((y - minY) / (maxY - minY || 1)) * (H - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  let selected = null;
  for (const p of points) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", sx(p.x || 0).toFixed(1));
    dot.setAttribute("cy", sy(p.y || 0).toFixed(1));
    dot.setAttribute("r", "5");
    dot.setAttribute("fill", colour(p.contentType || ""));
    dot.dataset.nodeId = p.nodeId;
    const title = document.createElementNS(ns, "title");
    title.textContent = visibleControls(`${p.title || p.nodeId} (${p.contentType})`);
    dot.appendChild(title);
    dot.addEventListener("click", () => {
      if (selected) selected.classList.remove("selected");
      selected = dot;
      dot.classList.add("selected");
      showNode(p, payload.tenant || "");
    });
    svg.appendChild(dot);
  }
  const focus = new URLSearchParams(location.search).get("focus");
  if (focus) {
    const dot = [...svg.querySelectorAll("circle")].find((c) => c.dataset.nodeId === focus);
    if (dot) dot.dispatchEvent(new Event("click"));
    else showNode({ nodeId: focus, title: focus }, payload.tenant || "");
  }
}

async function showNode(point, tenant) {
  const panel = document.getElementById("node");
  panel.replaceChildren(el("h2", point.title || point.nodeId), el("p", "Loading…"));
  try {
    const q = (params) => new URLSearchParams({ tenant, ...params }).toString();
    const found = await getJSON(`/api/semantic/nodes?${q({ id: point.nodeId })}`);
    const node = (found.nodes || [])[0];
    if (!node) throw new Error(`node not found: ${point.nodeId}`);
    const near = await getJSON(`/api/semantic/nearest?${q({ id: point.nodeId, k: "10" })}`);
    const meta = el("dl", null, { class: "numbers" });
    for (const [k, v] of [["id", node.id], ["slug", node.slug || ""], ["type", node.contentType],
                          ["version", node.version], ["tags", (node.tags || []).join(", ")]]) {
      meta.append(el("dt", k), el("dd", v));
    }
    const list = el("ol", null, { class: "neighbours" });
    for (const hit of near.hits || []) {
      const item = el("li");
      const link = el("a", hit.node.title || hit.node.id, { href: `${BASE}/explorer?${new URLSearchParams({ focus: hit.node.id, tenant })}` });
      item.append(link, el("span", ` ${Number(hit.score).toFixed(4)}`, { class: "similarity" }));
      list.appendChild(item);
    }
    panel.replaceChildren(el("h2", node.title || node.id), meta, el("h3", "Nearest neighbours (cosine similarity)"), list);
  } catch (error) {
    panel.replaceChildren(el("h2", point.title || point.nodeId), el("p", error.message, { class: "error" }));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  watchJob();
  watchLive();
  explorer();
});
