"use strict";
// The review page: rows from the JSON beside this script, filters, sort, keyboard, and the
// detail pane of the selected texture. Text goes in with textContent only (names are data).
(function () {
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const rows = data.rows;
  const byId = (id) => document.getElementById(id);
  const list = byId("list");
  const detail = byId("detail");
  const controls = {
    map: byId("f-map"), alpha: byId("f-alpha"), failed: byId("f-failed"),
    notes: byId("f-notes"), text: byId("f-text"), sort: byId("sort"), dir: byId("sort-dir"),
  };
  let ascending = true;
  let shown = []; // rows in display order that pass the filters
  let current = null; // the selected row

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function picture(row, kind, lazy, size) {
    const name = row.img && row.img[kind];
    if (!name) return null;
    const img = el("img");
    if (lazy) img.loading = "lazy";
    img.decoding = "async";
    img.alt = kind.replace("-", " ") + " of " + row.name;
    if (size && size.length === 2) { img.width = size[0]; img.height = size[1]; }
    img.src = data.base + encodeURIComponent(name);
    img.dataset.kind = kind;
    img.addEventListener("error", () => {
      const note = el("div", "missing", "missing: " + data.folder + "/" + name);
      img.replaceWith(note);
    });
    return img;
  }

  const wrapText = (w) => {
    if (!w || w.length < 2) return "";
    const axes = (w[1] ? "x" : "") + (w[0] ? "y" : "");
    return axes ? "wraps " + axes.split("").join("+") : "no wrap";
  };
  const sizeText = (s) => (s && s.length === 2 ? s[1] + "\u00d7" + s[0] : "");
  const pixels = (r) => (r.in.length === 2 ? r.in[0] * r.in[1] : 0);

  // -- the list ---------------------------------------------------------------------------------
  function buildRow(row) {
    const li = el("li", "row" + (row.status === "failed" ? " failed" : ""));
    li.setAttribute("role", "option");
    li.dataset.id = row.id;
    li.dataset.name = row.name;
    li.dataset.status = row.status;
    const thumbs = el("div", "thumbs");
    for (const side of ["in", "out"]) {
      const box = el("div", "thumb");
      const img = picture(row, "thumb-" + side, true, row.thumb);
      box.appendChild(img || el("div", "missing", side === "in" ? "no input" : "no output"));
      thumbs.appendChild(box);
    }
    const meta = el("div", "meta");
    meta.appendChild(el("div", "name", row.name));
    const badges = el("div", "badges");
    const badge = (text, cls) => { if (text) badges.appendChild(el("span", "badge " + (cls || ""), text)); };
    if (row.status !== "done") badge(row.status, row.status);
    badge(row.map);
    badge(row.alpha && row.alpha !== "absent" ? "alpha " + row.alpha : "");
    badge(wrapText(row.wrap));
    badge(row.notes.length ? row.notes.length + (row.notes.length > 1 ? " notes" : " note") : "", "notes");
    badge(row.status === "done" ? row.seconds.toFixed(2) + " s" : "");
    badge(sizeText(row.in) + (row.out.length && row.status !== "failed" ? " \u2192 " + sizeText(row.out) : ""));
    meta.appendChild(badges);
    if (row.reason && row.status === "failed") meta.appendChild(el("div", "reason", row.reason));
    li.append(thumbs, meta);
    li.addEventListener("click", () => select(row, false));
    row.el = li;
    return li;
  }

  function matches(row) {
    if (controls.failed.checked && row.status !== "failed") return false;
    if (controls.notes.checked && !row.notes.length && !(row.problems || []).length) return false;
    if (controls.map.value && (row.map || "-") !== controls.map.value) return false;
    if (controls.alpha.value && (row.alpha || "-") !== controls.alpha.value) return false;
    const text = controls.text.value.trim().toLowerCase();
    return !text || row.name.toLowerCase().includes(text);
  }

  function compare(a, b) {
    const fa = a.status === "failed" ? 0 : 1;
    const fb = b.status === "failed" ? 0 : 1;
    if (fa !== fb) return fa - fb; // failures first, whatever the order asked
    let d = 0;
    if (controls.sort.value === "time") d = a.seconds - b.seconds;
    else if (controls.sort.value === "size") d = pixels(a) - pixels(b);
    if (d === 0) d = a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    return ascending ? d : -d;
  }

  function update() {
    const ordered = rows.slice().sort(compare);
    const fragment = document.createDocumentFragment();
    shown = [];
    for (const row of ordered) {
      const ok = matches(row);
      row.el.hidden = !ok;
      if (ok) shown.push(row);
      fragment.appendChild(row.el);
    }
    list.appendChild(fragment);
    byId("count").textContent = "showing " + shown.length + " of " + rows.length;
    if (!current || !shown.includes(current)) select(shown[0] || null, true);
  }

  function fillChoices(select, key) {
    const values = [...new Set(rows.map((r) => r[key] || "-"))].sort();
    for (const v of values) {
      const option = el("option", "", v === "-" ? "unknown" : v);
      option.value = v;
      select.appendChild(option);
    }
  }

  // -- the detail pane --------------------------------------------------------------------------
  function select(row, quiet) {
    if (current && current.el) current.el.setAttribute("aria-selected", "false");
    current = row;
    detail.replaceChildren();
    if (!row) {
      detail.appendChild(el("p", "empty", "No texture matches the filters."));
      return;
    }
    row.el.setAttribute("aria-selected", "true");
    if (!quiet) {
      row.el.scrollIntoView({ block: "nearest" });
      try { history.replaceState(null, "", "#" + encodeURIComponent(row.name)); } catch (e) { /* file: quirks */ }
    }
    renderDetail(row);
  }

  function pair(row, kind, labels, size, pixelated) {
    const box = el("div", "pair");
    let any = false;
    ["in", "out"].forEach((side, i) => {
      const img = picture(row, kind + "-" + side, false, size);
      if (!img) return;
      if (pixelated) img.classList.add("pixelated");
      const cell = el("div");
      cell.append(el("span", "", labels[i]), img);
      box.appendChild(cell);
      any = true;
    });
    return any ? box : null;
  }

  function figure(caption, content, panels) {
    if (!content) return;
    const f = el("figure");
    f.append(el("figcaption", "", caption), content);
    panels.appendChild(f);
  }

  function slider(row) {
    if (!row.img["view-in"] || !row.img["view-out"]) return null;
    const wrap = el("div");
    const box = el("div", "compare");
    const after = picture(row, "view-out", false, row.view);
    const before = picture(row, "view-in", false, row.view);
    before.classList.add("before");
    const divider = el("div", "divider");
    box.append(after, before, divider, el("span", "tag l", "input"), el("span", "tag r", "output"));
    const range = el("input");
    range.type = "range"; range.id = "slider"; range.min = "0"; range.max = "100"; range.step = "0.5";
    range.value = "50";
    range.setAttribute("aria-label", "before/after position (input on the left)");
    const set = (value) => {
      range.value = String(value);
      const v = Number(range.value);
      before.style.clipPath = "inset(0 " + (100 - v) + "% 0 0)";
      divider.style.left = v + "%";
    };
    range.addEventListener("input", () => set(range.value));
    const drag = (e) => {
      const r = box.getBoundingClientRect();
      set(Math.max(0, Math.min(100, ((e.clientX - r.left) / r.width) * 100)));
    };
    box.addEventListener("pointerdown", (e) => { box.setPointerCapture(e.pointerId); drag(e); });
    box.addEventListener("pointermove", (e) => { if (e.buttons) drag(e); });
    set(50);
    wrap.append(box, range);
    return wrap;
  }

  function renderDetail(row) {
    detail.appendChild(el("h2", "", row.name));
    if (row.status === "failed") detail.appendChild(el("p", "reason", "Failed: " + row.reason));
    else if (row.status === "skipped") detail.appendChild(el("p", "", "Skipped: " + row.reason));
    const dl = el("dl", "decisions");
    const item = (k, v) => { if (v) dl.append(el("dt", "", k), el("dd", "", v)); };
    const unknown = row.status === "done" ? "" : "not decided (" + row.status + ")";
    item("map type", row.map || unknown);
    item("alpha", row.alpha || unknown);
    if (row.wrap.length === 2) {
      item("wrap", "x (left/right): " + (row.wrap[1] ? "yes" : "no") + ", y (top/bottom): " + (row.wrap[0] ? "yes" : "no"));
    }
    item("model", row.model || data.summary.model || "");
    if (row.status === "done") item("seconds", row.seconds.toFixed(2) + " (its share of its batch)");
    item("size", sizeText(row.in) + (row.out.length && row.status !== "failed" ? " \u2192 " + sizeText(row.out) : ""));
    item("input", row.source);
    item("output", row.target);
    detail.appendChild(dl);
    const notes = row.notes.concat(row.problems || []);
    if (notes.length) {
      const ul = el("ul", "notes");
      for (const n of notes) ul.appendChild(el("li", "", n));
      detail.appendChild(ul);
    }
    const panels = el("div", "panels");
    detail.appendChild(panels);
    figure("Input and output at the same size", pair(row, "view", ["input", "output"], row.view), panels);
    figure("Before / after: drag, or \u2190 \u2192", slider(row), panels);
    if (row.crop && row.crop.length === 4) {
      const [x, y, w, h] = row.crop;
      figure("100% crop of the most detailed region (output pixels " + x + "," + y + ", " + w + "\u00d7" + h + ")",
        pair(row, "crop", ["input (nearest)", "output"], [w, h], true), panels);
    }
    if (row.img.tiled) {
      const t = el("div", "pair");
      const tiled = picture(row, "tiled", false, null);
      const junction = picture(row, "junction", false, null);
      for (const [label, img] of [["2\u00d72", tiled], ["where four copies meet, 100%", junction]]) {
        if (!img) continue;
        if (label !== "2\u00d72") img.classList.add("pixelated");
        else if (row.view) { img.width = row.view[0]; img.height = row.view[1]; }
        const cell = el("div");
        cell.append(el("span", "", label), img);
        t.appendChild(cell);
      }
      figure("Tiled output (" + wrapText(row.wrap) + ")", t, panels);
    }
    figure("Shaded normals (light from the top left)", pair(row, "shaded", ["input", "output"], row.view), panels);
    figure("Alpha channel", pair(row, "alpha", ["input", "output"], row.view), panels);
  }

  // -- keys -------------------------------------------------------------------------------------
  function step(delta) {
    if (!shown.length) return;
    const i = current ? shown.indexOf(current) : -1;
    const next = Math.max(0, Math.min(shown.length - 1, i + delta));
    select(shown[next], false);
  }

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t && (t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "checkbox" && t.type !== "range"));
    if (typing) {
      if (e.key === "Escape" || e.key === "Enter") t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const range = byId("slider");
    switch (e.key) {
      case "j": case "ArrowDown": step(1); break;
      case "k": case "ArrowUp": step(-1); break;
      case "PageDown": step(10); break;
      case "PageUp": step(-10); break;
      case "Home": step(-shown.length); break;
      case "End": step(shown.length); break;
      case "ArrowLeft": case "ArrowRight":
        if (range) {
          range.value = String(Number(range.value) + (e.key === "ArrowLeft" ? -5 : 5));
          range.dispatchEvent(new Event("input"));
        }
        break;
      case "f": controls.failed.checked = !controls.failed.checked; update(); break;
      case "/": controls.text.focus(); break;
      default: return;
    }
    e.preventDefault();
  });

  // -- start ------------------------------------------------------------------------------------
  const s = data.summary;
  const parts = [];
  if (s.done !== undefined) parts.push(s.done + " upscaled");
  if (s.skipped) parts.push(s.skipped + " skipped");
  if (s.failed !== undefined) parts.push(s.failed + " failed");
  if (s.model) parts.push("model " + s.model + (s.scale ? " x" + s.scale : ""));
  if (s.seconds !== undefined) parts.push(Number(s.seconds).toFixed(1) + " s");
  if (s.output) parts.push("output " + s.output);
  if (s.reviewed) parts.push("page made " + s.reviewed);
  parts.push("pictures in " + data.folder + "/");
  byId("summary").textContent = parts.join(" \u00b7 ");
  fillChoices(controls.map, "map");
  fillChoices(controls.alpha, "alpha");
  const fragment = document.createDocumentFragment();
  for (const row of rows) fragment.appendChild(buildRow(row));
  list.appendChild(fragment);
  for (const c of [controls.map, controls.alpha, controls.failed, controls.notes, controls.sort]) {
    c.addEventListener("change", update);
  }
  controls.text.addEventListener("input", update);
  controls.dir.addEventListener("click", () => {
    ascending = !ascending;
    controls.dir.textContent = ascending ? "\u2191 ascending" : "\u2193 descending";
    update();
  });
  update();
  let wanted = ""; // review.html#name selects a texture
  try { wanted = decodeURIComponent(location.hash.slice(1)); } catch (e) { /* not ours */ }
  const linked = rows.find((r) => r.name === wanted);
  if (linked) { select(linked, true); linked.el.scrollIntoView({ block: "nearest" }); }
  document.body.dataset.ready = "1";
})();
