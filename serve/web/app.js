// policytag analysts' page: upload, read tagged paragraphs with evidence, 6D tables, downloads.
// Vanilla JS, no build step, no network beyond this server.
"use strict";

const TOKEN_KEY = "policytag-token";
const PAGE = 300; // paragraphs drawn at a time
const S = { config: null, job: null, rows: [], shown: PAGE, names: {}, byDisplay: {}, dimIndex: {}, evidence: {},
            selected: new Set(), polling: null, report: null };
const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => Array.from(document.querySelectorAll(sel));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// ---- talking to the server (same token as the API, kept in this browser session) ----------------
class HttpError extends Error { constructor(status, message) { super(message); this.status = status; } }

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, { method = "GET", json, body, raw = false, contentType } = {}) {
  const h = headers(json !== undefined ? { "Content-Type": "application/json" } : contentType ? { "Content-Type": contentType } : {});
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: json !== undefined ? JSON.stringify(json) : body });
  } catch (e) {
    throw new HttpError(0, `无法连接服务器 cannot reach the server: ${e.message}`);
  }
  if (resp.status === 401) { askToken("令牌错误或缺失 missing or wrong token"); throw new HttpError(401, "需要令牌 token required"); }
  if (!resp.ok) {
    let detail = resp.statusText;
    try { const b = await resp.json(); detail = typeof b.detail === "string" ? b.detail : JSON.stringify(b.detail || b); } catch (e) { /* not JSON */ }
    throw new HttpError(resp.status, detail);
  }
  return raw ? resp : resp.json();
}

function banner(message) {
  const b = $("#banner");
  b.textContent = message || "";
  b.hidden = !message;
}

function askToken(message) {
  const d = $("#token-dialog");
  $("#token-error").textContent = message || "";
  if (!d.open) d.showModal();
  $("#token-input").focus();
}

// ---- codebook -----------------------------------------------------------------------------------
function indexSchema(schema) {
  S.names = {}; S.byDisplay = {}; S.dimIndex = {};
  schema.dimensions.forEach((d, i) => {
    S.dimIndex[d.id] = i;
    S.names[d.id] = d;
    for (const g of d.groups) { S.names[g.id] = { ...g, dimension: d.id, isGroup: true }; S.byDisplay[`${g.zh} ${g.en}`] = g.id; }
    for (const l of d.labels) { S.names[l.id] = { ...l, dimension: d.id }; S.byDisplay[`${l.zh} ${l.en}`] = l.id; }
  });
  const dimSel = $("#f-dim");
  dimSel.replaceChildren(el("option", { value: "", text: "全部 all" }));
  for (const d of schema.dimensions) dimSel.append(el("option", { value: d.id, text: `${d.zh} ${d.en}` }));
  fillLabelFilter();
}

function fillLabelFilter() {
  const dim = $("#f-dim").value;
  const sel = $("#f-label");
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "", text: "全部 all" }));
  for (const d of S.config.schema.dimensions) {
    if (dim && d.id !== dim) continue;
    const og = el("optgroup", { label: `${d.zh} ${d.en}` });
    for (const g of d.groups) og.append(el("option", { value: g.id, text: `${g.zh} ${g.en}（组 group）` }));
    for (const l of d.labels) og.append(el("option", { value: l.id, text: `${l.zh} ${l.en}` }));
    sel.append(og);
  }
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

// ---- tabs and URL ---------------------------------------------------------------------------------
function showTab(name) {
  for (const t of $$(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  for (const p of $$(".panel")) p.hidden = p.id !== `tab-${name}`;
}

function setJobInUrl(id) {
  const url = new URL(location.href);
  if (id) url.searchParams.set("job", id); else url.searchParams.delete("job");
  history.replaceState(null, "", url);
}

// ---- upload -----------------------------------------------------------------------------------------
function fmtBytes(n) { return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(0)} kB` : `${n} B`; }

async function submitUpload(ev) {
  ev.preventDefault();
  banner("");
  S.refused = [];
  const files = Array.from($("#files").files);
  const text = $("#paste").value;
  if (!files.length && !text.trim()) { banner("请选择文件或粘贴文本。Choose a file or paste some text."); return; }
  const metadata = {};
  for (const k of ["title", "issuer", "doc_number", "date", "level", "nature"]) {
    const v = $(`#m-${k}`).value.trim();
    if (v) metadata[k] = v;
  }
  $("#submit").disabled = true;
  try {
    const job = await api("/web/api/jobs", { method: "POST", json: { metadata, text: text.trim() ? text : null } });
    setJobInUrl(job.id);
    S.job = job; resetJobView();
    renderJob(job);
    const limit = S.config.limits.max_body_bytes;
    const refused = [];
    for (const [i, f] of files.entries()) {
      setStage(`上传 uploading ${i + 1}/${files.length}: ${f.name}`, 0.02 * (i / files.length));
      if (f.size > limit) { refused.push({ name: f.name, size: f.size, error: `文件过大 too large: ${fmtBytes(f.size)} > ${fmtBytes(limit)} (POLICYTAG_MAX_BODY_BYTES)` }); continue; }
      try {
        await api(`/web/api/jobs/${job.id}/files?name=${encodeURIComponent(f.name)}`, { method: "POST", body: f, contentType: "application/octet-stream" });
      } catch (e) {
        if (e.status === 401) throw e;
        refused.push({ name: f.name, size: f.size, error: `未上传 not uploaded: ${e.message}` });
      }
    }
    S.refused = refused;
    const state = await api(`/web/api/jobs/${job.id}`);
    if (!state.files.length) { renderJob(state); banner("没有可标注的文件。No file could be uploaded: " + refused.map((r) => `${r.name}: ${r.error}`).join("; ")); return; }
    renderJob(await api(`/web/api/jobs/${job.id}/start`, { method: "POST" }));
    poll(job.id);
  } catch (e) {
    banner(`上传失败 upload failed: ${e.message}`);
  } finally {
    $("#submit").disabled = false;
  }
}

function resetJobView() {
  S.rows = []; S.evidence = {}; S.selected = new Set(); S.report = null; S.shown = PAGE; S.refused = S.refused || [];
  $("#read-body").hidden = true; $("#read-empty").hidden = false;
  $("#analyse-body").hidden = true; $("#analyse-empty").hidden = false;
}

function setStage(text, value) {
  $("#job").hidden = false;
  $("#stage").textContent = text;
  if (value !== undefined) $("#progress").value = value;
}

function renderJob(state) {
  S.job = state;
  $("#job").hidden = false;
  $("#new-job").hidden = false;
  $("#job-id").textContent = state.id;
  setStage(state.stage || state.status, state.progress || 0);
  $("#progress").dataset.status = state.status;
  $("#job-message").textContent = state.message || state.report_error || "";
  const statusText = { uploaded: "已上传 uploaded", read: "已读取 read", tagged: "已标注 tagged", failed: "失败 failed" };
  const body = $("#file-table tbody");
  body.replaceChildren();
  const all = [...state.files, ...(S.refused || []).map((r) => ({ ...r, status: "failed", paragraphs: 0 }))];
  for (const f of all) {
    body.append(el("tr", { class: f.status === "failed" ? "failed" : null, dataset: { file: f.name } },
      el("td", { text: f.name }), el("td", { text: fmtBytes(f.size || 0) }), el("td", { class: "file-status", text: statusText[f.status] || f.status }),
      el("td", { text: f.paragraphs || "" }), el("td", { class: "file-error", text: f.error || (f.encoding ? `编码 encoding ${f.encoding}` : "") })));
  }
  const failed = all.filter((f) => f.status === "failed").length;
  $("#job-summary").textContent = state.status === "done"
    ? `完成：${state.documents} 个文件，${state.rows} 段已标注${failed ? `，${failed} 个文件失败` : ""}。 Done: ${state.rows} paragraphs of ${state.documents} document(s) tagged${failed ? `, ${failed} file(s) failed` : ""}.`
    : "";
}

function poll(id) {
  clearTimeout(S.polling);
  const tick = async () => {
    let state;
    try { state = await api(`/web/api/jobs/${id}`); } catch (e) { banner(e.message); return; }
    renderJob(state);
    if (state.status === "queued" || state.status === "running") { S.polling = setTimeout(tick, 500); return; }
    if (state.status === "done") await loadResults(id);
    if (state.status === "created") $("#job-message").textContent = "上传未完成：请重新上传。The upload was not finished: upload again.";
  };
  tick();
}

// ---- read ---------------------------------------------------------------------------------------------
async function loadResults(id) {
  const data = await api(`/web/api/jobs/${id}/rows`);
  S.rows = data.rows;
  const docs = $("#f-doc");
  docs.replaceChildren(el("option", { value: "", text: "全部 all" }));
  for (const d of [...new Set(S.rows.map((r) => r.doc_id))]) docs.append(el("option", { value: d, text: d }));
  $("#read-body").hidden = false; $("#read-empty").hidden = true;
  $("#studio").hidden = !S.config.studio;
  S.shown = PAGE;
  renderRows();
  loadReport(id);
}

function isFraming(r) { return Object.values(r.labels).every((ls) => !ls.length); }

function filtered() {
  const doc = $("#f-doc").value, dim = $("#f-dim").value, label = $("#f-label").value;
  const hide = $("#f-hide-framing").checked, q = $("#f-text").value.trim();
  return S.rows.filter((r) => {
    if (doc && r.doc_id !== doc) return false;
    if (hide && (r.is_heading || isFraming(r))) return false;
    if (q && !r.text.includes(q)) return false;
    if (label) {
      const info = S.names[label];
      const pool = info && info.isGroup ? (r.groups[info.dimension] || []) : (r.labels[info ? info.dimension : dim] || []);
      return pool.includes(label);
    }
    if (dim) return (r.labels[dim] || []).length > 0;
    return true;
  });
}

function renderRows() {
  const list = filtered();
  $("#count").textContent = `显示 ${Math.min(list.length, S.shown)} / ${list.length} 段（共 ${S.rows.length}） showing ${list.length} of ${S.rows.length} paragraphs`;
  $("#count").dataset.matching = list.length;
  const box = $("#rows");
  box.replaceChildren(...list.slice(0, S.shown).map(paragraphNode));
  $("#more").hidden = list.length <= S.shown;
}

function chip(id, prob, row) {
  const info = S.names[id] || { zh: id, en: id, dimension: "" };
  const ev = S.evidence[row.row];
  const has = ev && ev[id] && ev[id].length;
  const node = el("span", { class: `chip dim-${S.dimIndex[info.dimension] ?? 0}${has ? " has-evidence" : ""}`,
                            title: `${info.en}${info.definition ? ` — ${info.definition}` : ""}`, dataset: { label: id } },
    info.zh, el("span", { class: "p", text: prob !== undefined ? prob.toFixed(2) : "" }));
  if (has) node.addEventListener("click", () => highlight(row, id));
  return node;
}

function paragraphNode(r) {
  const framing = isFraming(r) && !r.is_heading;
  const chips = [];
  for (const d of S.config.schema.dimensions) {
    for (const g of (r.groups[d.id] || [])) {
      const gi = d.groups.findIndex((x) => x.id === g);
      chips.push(el("span", { class: `chip group g-${gi}`, dataset: { group: g }, title: `${S.names[g].en} (tool group)` }, S.names[g].zh));
    }
    for (const l of (r.labels[d.id] || [])) chips.push(chip(l, r.probs[l], r));
  }
  const anyLabel = !isFraming(r);
  const text = el("div", { class: "text" }, r.text);
  const node = el("div", { class: `para${r.is_heading ? " heading" : ""}${framing ? " framing" : ""}`, dataset: { row: r.row, doc: r.doc_id } },
    el("div", { class: "idx" }, S.config.studio ? el("input", { type: "checkbox", class: "pick", title: "选择 select", checked: S.selected.has(r.row),
        onchange: (e) => e.target.checked ? S.selected.add(r.row) : S.selected.delete(r.row) }) : null, el("div", { text: r.paragraph_index })),
    el("div", { class: "doc", title: r.title || "", text: r.doc_id }),
    el("div", {},
      r.is_heading ? el("span", { class: "badge heading", text: "标题 Heading" }) : null,
      framing ? el("span", { class: "badge framing", text: "框架段 Framing" }) : null,
      text,
      el("div", { class: "chips" }, chips,
        anyLabel ? el("button", { type: "button", class: "evidence-btn", onclick: () => loadEvidence(r) }, "证据 Evidence") : null),
      el("div", { class: "evidence" })));
  if (S.evidence[r.row] && S.evidence[r.row]._shown) highlight(r, S.evidence[r.row]._shown, node);
  return node;
}

async function loadEvidence(r) {
  const node = document.querySelector(`.para[data-row="${r.row}"]`);
  const out = node.querySelector(".evidence");
  out.textContent = "计算中… computing (leave-one-word-out)";
  try {
    const data = await api(`/web/api/jobs/${S.job.id}/evidence`, { method: "POST", json: { row: r.row } });
    S.evidence[r.row] = data.evidence;
  } catch (e) { out.textContent = `无法计算证据 evidence failed: ${e.message}`; return; }
  const first = Object.keys(S.evidence[r.row]).find((k) => !k.startsWith("_") && S.evidence[r.row][k].length);
  const fresh = paragraphNode(r);
  node.replaceWith(fresh);
  if (first) highlight(r, first, fresh);
  else fresh.querySelector(".evidence").textContent = "没有单个词语明显支持这些标签。No single word carries these labels.";
}

function highlight(r, label, node) {
  node = node || document.querySelector(`.para[data-row="${r.row}"]`);
  const ev = S.evidence[r.row] || {};
  ev._shown = label;
  const words = (ev[label] || []).map((w) => w.word).filter((w) => w.trim());
  // mark every occurrence of the evidence words, longest first, without overlaps
  const spans = [];
  for (const w of [...words].sort((a, b) => b.length - a.length)) {
    let at = r.text.indexOf(w);
    while (at >= 0) {
      if (!spans.some(([s, e]) => at < e && at + w.length > s)) spans.push([at, at + w.length]);
      at = r.text.indexOf(w, at + w.length);
    }
  }
  spans.sort((a, b) => a[0] - b[0]);
  const parts = [];
  let pos = 0;
  for (const [s, e] of spans) {
    parts.push(r.text.slice(pos, s), el("mark", { class: "ev", dataset: { label } }, r.text.slice(s, e)));
    pos = e;
  }
  parts.push(r.text.slice(pos));
  node.querySelector(".text").replaceChildren(...parts);
  for (const c of node.querySelectorAll(".chip[data-label]")) {
    c.classList.toggle("selected", c.dataset.label === label);
    const has = ev[c.dataset.label] && ev[c.dataset.label].length;
    if (has && !c.classList.contains("has-evidence")) { c.classList.add("has-evidence"); c.addEventListener("click", () => highlight(r, c.dataset.label)); }
  }
  const info = S.names[label] || { zh: label, en: label };
  node.querySelector(".evidence").replaceChildren(
    el("strong", { text: `${info.zh} ${info.en}：` }),
    (ev[label] || []).map((w) => `「${w.word}」−${w.drop.toFixed(3)} `).join("  ") || "—",
    el("span", { class: "muted", text: "（去掉该词后概率下降 probability drop without the word；点击其他标签切换 click another label）" }));
}

async function pushStudio() {
  const rows = [...S.selected].sort((a, b) => a - b);
  const out = $("#studio-result");
  if (!rows.length) { out.textContent = "请先勾选段落。Select paragraphs first."; return; }
  out.textContent = "发送中… sending";
  try {
    const r = await api(`/web/api/jobs/${S.job.id}/studio`, { method: "POST", json: { rows, title: $("#studio-title").value } });
    out.textContent = `已导入 ${r.imported} 个任务（含模型建议），${r.already_there} 个已存在。Imported ${r.imported} task(s) with suggestions, ${r.already_there} already there.`;
  } catch (e) { out.textContent = `失败 failed: ${e.message}`; }
}

// ---- analyse --------------------------------------------------------------------------------------
async function loadReport(id) {
  $("#analyse-body").hidden = false; $("#analyse-empty").hidden = true;
  for (const b of $$(".download")) b.disabled = !S.job.downloads.includes(b.dataset.name);
  let data;
  try { data = await api(`/web/api/jobs/${id}/report`); } catch (e) { $("#report-intro").textContent = `报告不可用 no report: ${e.message}`; return; }
  S.report = data;
  $("#report-intro").textContent = data.intro;
  $("#report-notes").replaceChildren(...data.notes.map((n) => el("p", { class: "note", text: n })));
  $("#toc").replaceChildren(...data.tables.map((t, i) => el("a", { href: `#t${i}`, text: t.key })));
  $("#tables").replaceChildren(...data.tables.map(tableNode));
}

function tableNode(t, i) {
  const dist = t.layout === "dist";
  const head = el("tr", {}, el("th", { text: t.row_header }), t.columns.map((c) => el("th", { text: c })), dist ? el("th", { text: "图 chart" }) : null);
  const body = t.rows.map((r) => {
    const id = S.byDisplay[r.name];
    const name = el("td", { class: `rowname${id ? " clickable" : ""}`, text: r.label,
      title: id ? "点击查看这些段落 click to read these paragraphs" : null,
      onclick: id ? () => { $("#f-dim").value = ""; fillLabelFilter(); $("#f-label").value = id; $("#f-doc").value = ""; S.shown = PAGE; renderRows(); showTab("read"); } : null });
    const cells = r.cells.map((c, j) => {
      const p = r.percent[j];
      const shade = !dist && p !== null && r.kind === "label" ? `background: rgba(76,114,176,${Math.min(p / 100, 1) * 0.55})` : null;
      return el("td", { class: "num", style: shade, text: c });
    });
    const bar = dist ? el("td", { class: "barcell" }, r.kind !== "header" && r.percent[0] !== null
      ? el("span", { class: "bar", style: `width:${Math.min(r.percent[0], 100) * 2.5}px; background:${r.kind === "label" ? "#4c72b0" : "#dd8452"}` }) : null) : null;
    return el("tr", { class: r.kind }, name, cells, bar);
  });
  return el("div", { class: "rtable", id: `t${i}`, dataset: { key: t.key } },
    el("h3", { text: `${t.key}. ${t.title}` }),
    el("table", {}, el("thead", {}, head), el("tbody", {}, body)),
    t.notes.map((n) => el("p", { class: "note", text: n })));
}

async function download(name) {
  try {
    const resp = await api(`/web/api/jobs/${S.job.id}/download/${name}`, { raw: true });
    const blob = await resp.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: `${S.job.id}-${name}` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (e) { banner(`下载失败 download failed: ${e.message}`); }
}

// ---- start ----------------------------------------------------------------------------------------
async function boot() {
  try {
    S.config = await api("/web/api/config");
  } catch (e) {
    if (e.status !== 401) banner(`服务不可用 service unavailable: ${e.message}`);
    return;
  }
  $("#token-dialog").open && $("#token-dialog").close();
  const l = S.config.limits;
  $("#model").textContent = `模型 model ${S.config.model_version}`;
  $("#limits").textContent = `支持 ${S.config.upload_suffixes.join(" ")}（GBK 或 UTF-8）；每个文件最大 ${fmtBytes(l.max_body_bytes)}，每个文件最多 ${l.max_paragraphs} 段，每段最多 ${l.max_chars} 字。 ` +
    `Up to ${fmtBytes(l.max_body_bytes)} per file, ${l.max_paragraphs} paragraphs per document, ${l.max_chars} characters per paragraph.`;
  indexSchema(S.config.schema);
  const id = new URL(location.href).searchParams.get("job");
  if (id) {
    try { const state = await api(`/web/api/jobs/${id}`); renderJob(state); poll(id); }
    catch (e) { banner(`任务不可用 job unavailable: ${e.message}`); setJobInUrl(null); }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const t of $$(".tab")) t.addEventListener("click", () => showTab(t.dataset.tab));
  $("#upload-form").addEventListener("submit", submitUpload);
  $("#new-job").addEventListener("click", () => { setJobInUrl(null); S.refused = []; $("#job").hidden = true; $("#upload-form").reset(); resetJobView(); });
  $("#token-button").addEventListener("click", () => askToken(""));
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
    $("#token-dialog").close();
    banner("");
    boot();
  });
  $("#f-dim").addEventListener("change", () => { fillLabelFilter(); S.shown = PAGE; renderRows(); });
  for (const id of ["#f-doc", "#f-label", "#f-hide-framing"]) $(id).addEventListener("change", () => { S.shown = PAGE; renderRows(); });
  $("#f-text").addEventListener("input", () => { S.shown = PAGE; renderRows(); });
  $("#more").addEventListener("click", () => { S.shown += PAGE; renderRows(); });
  $("#studio-push").addEventListener("click", pushStudio);
  for (const b of $$(".download")) b.addEventListener("click", () => download(b.dataset.name));
  boot();
});
