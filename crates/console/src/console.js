// longhaul console: copy buttons, token reveal for copying, live refresh. The pages
// read without it; it only adds.
"use strict";

// The entry's endpoints with their tokens, fetched when a copy needs one (the page
// itself shows tokens masked).
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

async function copy(button) {
  let text = button.dataset.copyText;
  if (text === undefined) {
    text = at(await endpointsOf(button.dataset.copySource), button.dataset.copyPath);
  }
  if (typeof text !== "string") throw new Error("nothing to copy");
  await navigator.clipboard.writeText(text);
  const label = button.textContent;
  button.textContent = "Copied";
  button.setAttribute("aria-live", "polite");
  setTimeout(() => { button.textContent = label; }, 1500);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy-path], button[data-copy-text]");
  if (!button) return;
  event.preventDefault();
  copy(button).catch((e) => {
    button.textContent = "Copy failed";
    console.error(e);
  });
});

// Sections marked data-refresh="URL" are replaced by URL's fragment every 2 s.
function refresh(section) {
  fetch(section.dataset.refresh, { credentials: "same-origin", cache: "no-store" })
    .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((html) => {
      section.innerHTML = html;
      section.dataset.refreshedAt = String(Date.now());
    })
    .catch((e) => console.error(`refresh: ${e}`));
}
document.addEventListener("DOMContentLoaded", () => {
  for (const section of document.querySelectorAll("[data-refresh]")) {
    setInterval(() => refresh(section), 2000);
  }
  // Copy buttons show only where the script runs.
  for (const button of document.querySelectorAll("button[hidden][data-copy-path], button[hidden][data-copy-text]")) {
    button.hidden = false;
  }
});
