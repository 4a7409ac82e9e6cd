// A real browser player for the tests: Debian's headless Chromium opens PAGE (served by
// the test; it plays an HTTP-FLV stream with mpegts.js) and this prints, every 200 ms
// for SECONDS, one JSON line: {"ms": since start, "current": the video element's
// currentTime, "state": its readyState, "error": mpegts.js's last error or null}.
//
//   node tests/browser/play.mjs PAGE SECONDS
import { launchChromium } from "./chromium.mjs";

const [page_url, seconds] = process.argv.slice(2);
const browser = await launchChromium(["--autoplay-policy=no-user-gesture-required"]);
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`console: ${m.text()}\n`));
  await page.goto(page_url);
  const start = Date.now();
  while (Date.now() - start < Number(seconds) * 1000) {
    const state = await page.evaluate(() => ({
      current: document.querySelector("video").currentTime,
      state: document.querySelector("video").readyState,
      error: window.lastError || null,
    }));
    process.stdout.write(JSON.stringify({ ms: Date.now() - start, ...state }) + "\n");
    await new Promise((r) => setTimeout(r, 200));
  }
} finally {
  await browser.close();
}
