// Screenshots of a run report's sections for docs/reports.md (issue 20), with headless Chromium.
//
//   npm install --prefix /some/tmp puppeteer-core @sparticuz/chromium   (a Chromium build, no system browser)
//   NODE_PATH=/some/tmp/node_modules node scripts/report_screenshots.js RUN_DIR/report.html docs/img
//
// Writes OUT_DIR/report-<section id>.png, one per section of the report (the element alone, so no path
// of the machine that wrote the report shows), at a 1280 px wide viewport.
const chromium = require("@sparticuz/chromium");
const puppeteer = require("puppeteer-core");
const path = require("path");

const SECTIONS = ["headline", "training", "calibration", "modalities", "class-accuracy", "confusions",
                  "embedding-map"];

(async () => {
  const [html, outDir] = process.argv.slice(2);
  if (!html || !outDir) {
    console.error("usage: node scripts/report_screenshots.js RUN_DIR/report.html OUT_DIR");
    process.exit(2);
  }
  const browser = await puppeteer.launch({args: chromium.args, executablePath: await chromium.executablePath(),
                                          headless: "shell", defaultViewport: {width: 1280, height: 900}});
  try {
    const page = await browser.newPage();
    await page.goto("file://" + path.resolve(html), {waitUntil: "load", timeout: 60000});
    await page.evaluate(() => {
      // the class table lists every class: its first rows keep the picture readable
      document.querySelectorAll("#class-accuracy-table tr").forEach((tr, i) => { if (i > 8) tr.remove(); });
      // config.yaml and env.json are long and env.json holds this machine's paths: the headline stops at
      // its tables and the timings
      for (const id of ["config", "environment"]) {
        const h = document.getElementById(id);
        if (h) { h.nextElementSibling.remove(); h.remove(); }
      }
    });
    for (const id of SECTIONS) {
      const el = await page.$(`section#${id}`);
      if (!el) { console.error(`no section #${id} in ${html}`); process.exitCode = 1; continue; }
      const out = path.join(outDir, `report-${id}.png`);
      await el.screenshot({path: out});
      console.log("wrote", out);
    }
  } finally {
    await browser.close();
  }
})().catch(e => { console.error(e.message); process.exit(1); });
