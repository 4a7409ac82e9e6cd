// longhaul console: copy buttons, and the live refresh of the sections marked
// data-refresh. The pages read without it; it only adds.
"use strict";

// Says `text` to screen readers (the page's status line).
function announce(text) {
  const status = document.getElementById("console-status");
  if (status) status.textContent = text;
}

// The entry's endpoints with their tokens, fetched when a copy needs one (the page
// shows tokens masked).
const secrets = new Map();
async function endpointsOf(url) {
  if (!secrets.has(url)) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    secrets.set(url, await response.json());
  }
  return secrets.get(url);
}

// "regions.0.primary_rtmp" in `value`.
function at(value, path) {
  return path.split(".").reduce((v, key) => (v == null ? v : v[key]), value);
}

// The text a button copies: its own, or fetched.
async function textOf(button) {
  if (button.dataset.copyText !== undefined) return button.dataset.copyText;
  const text = at(await endpointsOf(button.dataset.copySource), button.dataset.copyPath);
  if (typeof text !== "string") throw new Error(`nothing at ${button.dataset.copyPath}`);
  return text;
}

async function copy(button) {
  const what = button.getAttribute("aria-label") || "value";
  if (!window.isSecureContext || !navigator.clipboard) {
    // Plain HTTP off localhost has no clipboard API: show the text to copy by hand.
    window.prompt(`${what}: copy it (Ctrl+C or Cmd+C)`, await textOf(button));
    return;
  }
  if (window.ClipboardItem && navigator.clipboard.write) {
    // The promise keeps the click's permission while the text is fetched (Safari).
    const blob = textOf(button).then((t) => new Blob([t], { type: "text/plain" }));
    await navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
  } else {
    await navigator.clipboard.writeText(await textOf(button));
  }
  flash(button, "Copied");
  announce(`${what.replace(/^Copy /, "")} copied`);
}

// Shows `text` on the button for a moment, then its own label again.
function flash(button, text) {
  if (button.dataset.label === undefined) button.dataset.label = button.textContent;
  button.textContent = text;
  clearTimeout(button.flashTimer);
  button.flashTimer = setTimeout(() => { button.textContent = button.dataset.label; }, 1500);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy-path], button[data-copy-text]");
  if (!button) return;
  event.preventDefault();
  copy(button).catch((e) => {
    flash(button, "Copy failed");
    announce(`Copy failed: ${e.message}`);
    console.error(e);
  });
});

// A section marked data-refresh="URL" is replaced by URL's fragment every 2 s while
// the page is visible; one request at a time; it stops when the session has ended.
const REFRESH_MS = 2000;
function keepFresh(section) {
  let last = section.innerHTML;
  const tick = async () => {
    if (!document.hidden) {
      try {
        const response = await fetch(section.dataset.refresh, { credentials: "same-origin", cache: "no-store" });
        if ([401, 403, 404].includes(response.status)) {
          announce("Live updates stopped: reload the page (you may need to sign in again).");
          section.dataset.refreshStopped = String(response.status);
          return;
        }
        if (response.ok) {
          const html = await response.text();
          // Left alone while unchanged, so a selection or a screen reader's place stays.
          if (html !== last) {
            section.innerHTML = html;
            last = html;
          }
          section.dataset.refreshedAt = String(Date.now());
        }
      } catch (e) {
        console.error(`refresh: ${e}`);
      }
    }
    setTimeout(tick, REFRESH_MS);
  };
  setTimeout(tick, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const section of document.querySelectorAll("[data-refresh]")) keepFresh(section);
  // Copy buttons show only where the script runs.
  for (const button of document.querySelectorAll("button[hidden][data-copy-path], button[hidden][data-copy-text]")) {
    button.hidden = false;
  }
});
