// DOM helpers. Every text from the broker (queue names, payloads) goes in
// with textContent or as an attribute value: never parsed as HTML.
"use strict";

/** An element: `attrs` sets properties (class, id, href, type, ...) and
 *  `on*` listeners; children are nodes or strings (as text). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, String(v));
  }
  append(e, children);
  return e;
}

function append(parent, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return parent;
}

/** Replaces the children of `parent`. */
function fill(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

function fmtNum(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "";
  return Number(n).toLocaleString("en-US");
}

function fmtRate(r) {
  if (r === undefined || r === null || !Number.isFinite(r)) return "";
  return (r >= 100 ? r.toFixed(0) : r.toFixed(1)) + "/s";
}

function fmtBytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

/** A button that acts on its second click within 4 s (the first arms it):
 *  a purge or delete is not one slip away, and no blocking dialog. */
function armedButton(label, id, action) {
  let timer = null;
  const b = el("button", { type: "button", id, class: "danger" }, label);
  b.addEventListener("click", () => {
    if (!b.classList.contains("armed")) {
      b.classList.add("armed");
      b.textContent = "Confirm: " + label;
      timer = setTimeout(() => { b.classList.remove("armed"); b.textContent = label; }, 4000);
      return;
    }
    clearTimeout(timer);
    b.classList.remove("armed");
    b.textContent = label;
    action();
  });
  return b;
}
