// The web console in a real browser: Debian's headless Chromium, driven by
// playwright-core, against `longhaul dev` (tests/console.rs runs it). It does what an
// operator does and prints one JSON line per step ({"step": ..., ...}); where the test
// must act (publish with ffmpeg), it waits for a line on stdin.
//
//   node tests/browser/console.mjs BASE SCREENSHOTS DOWNLOADS
//
// BASE: the origin's HTTP address (http://127.0.0.1:8081); SCREENSHOTS: where each
// page's screenshot goes; DOWNLOADS: where the FMLE profile is saved.
import { launchChromium } from "./chromium.mjs";
import { createInterface } from "node:readline";

const [base, shots, downloads] = process.argv.slice(2);
const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (step, fields = {}) => process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
async function waitFor(word) {
  for (;;) {
    const { value, done } = await input.next();
    if (done) throw new Error(`stdin closed while waiting for "${word}"`);
    if (value.trim() === word) return;
  }
}

const browser = await launchChromium();
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  page.on("console", (m) => process.stderr.write(`console: ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`page error: ${e}\n`));
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());

  // Create an entry from the entries page.
  await page.goto(`${base}/console/`);
  await page.getByLabel("Name", { exact: true }).fill("Console check");
  await page.getByRole("button", { name: "Create" }).click();
  await page.waitForURL(/\/console\/entries\/1_[a-z0-9]{8}\?done=created$/);
  const id = new URL(page.url()).pathname.split("/").pop();
  say("created", { id, notice: await page.locator(".notice").textContent() });

  // Copy its primary URL with the mouse.
  await page.getByRole("button", { name: "Copy Primary RTMP URL" }).first().click();
  await page.getByRole("button", { name: "Copy Primary RTMP URL" }).first().filter({ hasText: "Copied" }).waitFor();
  say("copied", { url: await clipboard(), shown: await page.locator("code[data-url=primary_rtmp]").first().textContent() });

  // The test publishes to it; the rendition shows up live (the section refreshes).
  await waitFor("published");
  const row = page.locator(`#live tr[data-rendition="${id}_1"][data-on-air="true"]`);
  await row.waitFor({ timeout: 30000 });
  // The figures fill in after a whole second of media (the section refreshes).
  await page
    .locator(`#live tr[data-rendition="${id}_1"][data-on-air="true"] td[data-label="Bitrate"]`)
    .filter({ hasNotText: /^0 kbit\/s$/ })
    .waitFor({ timeout: 15000 });
  const elsewhere = page.locator(`#live [data-elsewhere="${id}_1"]`);
  await elsewhere.waitFor({ timeout: 30000 });
  say("live", {
    row: (await row.innerText()).replace(/\s+/g, " "),
    elsewhere: (await elsewhere.innerText()).replace(/\s+/g, " ").trim(),
  });
  await page.screenshot({ path: `${shots}/entry.png`, fullPage: true });

  // Regenerate the token through the confirmation.
  await page.getByRole("link", { name: "Regenerate token" }).click();
  await page.waitForURL(/\/regenerate$/);
  const warning = (await page.locator(".warning").innerText()).replace(/\s+/g, " ");
  await page.screenshot({ path: `${shots}/regenerate.png`, fullPage: true });
  await page.getByRole("button", { name: "Regenerate token" }).click();
  await page.waitForURL(/done=regenerated$/);
  say("regenerated", { warning, notice: await page.locator(".notice").textContent() });

  // The encoder is cut: the live section says so after a refresh.
  await page.locator("#live", { hasText: "Nothing is live for this entry here now." }).waitFor({ timeout: 15000 });
  say("cut shown");

  // Copy the new primary URL with the keyboard: Tab to the button, Enter.
  await page.locator("body").focus();
  let focused = "";
  for (let i = 0; i < 40 && focused !== "Copy Primary RTMP URL"; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") || "");
  }
  if (focused !== "Copy Primary RTMP URL") throw new Error("Tab never reached the copy button");
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Copy Primary RTMP URL" }).first().filter({ hasText: "Copied" }).waitFor();
  const copiedAgain = await clipboard();
  // Asked, the page shows the new URL itself.
  await page.getByRole("link", { name: "Show tokens" }).click();
  await page.waitForURL(/reveal=1$/);
  const revealed = await page.locator("code[data-url=primary_rtmp]").first().textContent();
  say("copied again", { url: copiedAgain, revealed });
  await page.getByRole("link", { name: "Hide them" }).click();

  // Export the FMLE profile.
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Export XML for FMLE" }).click(),
  ]);
  const path = `${downloads}/${download.suggestedFilename()}`;
  await download.saveAs(path);
  say("fmle", { path });

  // The delete confirmation (cancelled).
  await page.getByRole("link", { name: "Delete entry" }).click();
  await page.waitForURL(/\/delete$/);
  await page.screenshot({ path: `${shots}/delete.png`, fullPage: true });
  await page.getByRole("link", { name: "Cancel" }).click();
  await page.waitForURL(new RegExp(`/console/entries/${id}$`));

  // The entries list, and the cluster page.
  await page.goto(`${base}/console/entries`);
  await page.screenshot({ path: `${shots}/entries.png`, fullPage: true });
  await page.goto(`${base}/console/cluster`);
  await page.locator("section:has(#edges) tr[data-state=connected]").first().waitFor({ timeout: 15000 });
  const edges = await page.locator("section:has(#edges) tr[data-state=connected]").count();
  const peers = await page.locator("section:has(#origins) tr[data-state=connected]").count();
  const report = page.locator("section:has(#origins) td[data-label='Its report']").filter({ hasText: /^healthy, / });
  await report.first().waitFor({ timeout: 15000 });
  const peerReport = await report.first().textContent();
  await page.screenshot({ path: `${shots}/cluster.png`, fullPage: true });
  say("cluster", { edges, peers, peerReport });

  // The entry page on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/console/entries/${id}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  await page.screenshot({ path: `${shots}/entry-phone.png` });
  // The cluster page's tables, laid out as blocks on a phone, as a screen reader gets
  // them: Chromium's own accessibility tree, not Playwright's reading of the markup.
  await page.goto(`${base}/console/cluster`);
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send("Accessibility.getFullAXTree");
  const roles = {};
  for (const node of nodes) {
    const role = node.role?.value;
    if (role && !node.ignored) roles[role] = (roles[role] ?? 0) + 1;
  }
  const tables = await page.locator("table").count();
  // Browsers guess from a table's layout whether it holds data (WebKit is reported to
  // drop the semantics of one shown as blocks); explicit roles on every part leave
  // nothing to guess. Chromium keeps them by itself, so the tree above cannot tell.
  const unroled = await page
    .locator("table:not([role=table]), thead:not([role=rowgroup]), tbody:not([role=rowgroup]), tr:not([role=row]), th:not([role=columnheader]), td:not([role=cell])")
    .count();
  const display = await page.locator("table").first().evaluate((t) => getComputedStyle(t).display);
  say("phone", { overflow, tables, display, roles, unroled });
} finally {
  await browser.close();
}
