// Drives mcpd's status page in headless Chromium (puppeteer-core, the system's chromium) for
// tests/web.rs, talking JSON lines: stdout reports, stdin commands.
//
// Usage: node web_check.mjs BASE_URL SCREENSHOT_DIR
//
//   -> {"event":"loaded","servers":[{name,state,tools,description}],"polls":N}
//   <- {"wait_state":{"server":"echo","state":"stopped"}}   (after the test changed it)
//   -> {"event":"changed","polls_before":N,"polls_after":M,"reloaded":false}
//   -> {"event":"report", ...}   axe-core and html-validate results, console errors, every
//      request outside BASE_URL's origin, the page without JavaScript, the detail page.
// Any failure prints {"event":"error","message":...} and exits 1.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";
import { HtmlValidate } from "html-validate";

const require = createRequire(import.meta.url);
const [base, shots] = process.argv.slice(2);
const origin = new URL(base).origin;
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const WAIT = { timeout: 15000 };

/** Everything a page did that the test must see: console errors, failures, other origins. */
function watch(page, log) {
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warn") {
      log.console.push(`${message.type()}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => log.page_errors.push(String(error)));
  page.on("requestfailed", (request) =>
    log.failed_requests.push(`${request.url()}: ${request.failure()?.errorText}`),
  );
  page.on("request", (request) => {
    const url = request.url();
    log.requests.push(url);
    if (/^https?:/.test(url) && new URL(url).origin !== origin) {
      log.foreign_requests.push(url);
    }
  });
  page.on("response", (response) => {
    if (response.status() >= 400) {
      log.failed_requests.push(`${response.url()}: HTTP ${response.status()}`);
    }
  });
}

/** The servers as the DOM shows them. */
const servers = (page) =>
  page.$$eval("[data-server]", (nodes) =>
    nodes.map((node) => ({
      name: node.getAttribute("data-server"),
      state: node.querySelector('[data-field="state"]')?.textContent,
      tools: node.querySelector('[data-field="tools"]')?.textContent,
      description: node.querySelector(".description")?.textContent ?? null,
      link: node.querySelector("h2 a")?.getAttribute("href") ?? null,
    })),
  );

const polls = (page) =>
  page.$eval("#live", (live) => Number(live.getAttribute("data-polls") || 0));

async function axe(page) {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    });
    return result.violations.map((violation) => ({
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      nodes: violation.nodes.map((node) => node.target.join(" ")).slice(0, 5),
    }));
  });
}

async function validate(path) {
  const response = await fetch(base + path);
  const html = await response.text();
  const validator = new HtmlValidate({ extends: ["html-validate:recommended"] });
  const report = await validator.validateString(html, path);
  return report.results.flatMap((result) =>
    result.messages.map((message) => `${path}:${message.line}:${message.column} ${message.ruleId}: ${message.message}`),
  );
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"],
  });
  const log = { console: [], page_errors: [], failed_requests: [], foreign_requests: [], requests: [] };
  try {
    const page = await browser.newPage();
    watch(page, log);
    await page.setViewport({ width: 1200, height: 900 });
    await page.goto(base + "/", { waitUntil: "load" });
    await page.waitForFunction(() => Number(document.getElementById("live")?.getAttribute("data-polls")) >= 1, WAIT);
    say({ event: "loaded", servers: await servers(page), polls: await polls(page) });

    const command = JSON.parse((await lines.next()).value);
    const { server, state } = command.wait_state;
    await page.evaluate(() => {
      window.mcpdNotReloaded = true;
    });
    const before = await polls(page);
    await page.waitForFunction(
      (name, wanted) =>
        document.querySelector(`[data-server="${name}"] [data-field="state"]`)?.textContent === wanted,
      WAIT,
      server,
      state,
    );
    say({
      event: "changed",
      polls_before: before,
      polls_after: await polls(page),
      reloaded: !(await page.evaluate(() => window.mcpdNotReloaded === true)),
      announced: await page.$eval("#announce", (node) => node.textContent),
    });
    await page.screenshot({ path: `${shots}/index.png`, fullPage: true });
    const hostile = await page.evaluate(() => typeof window.pwned);
    const indexAxe = await axe(page);

    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
    await page.goto(base + "/ui/servers/echo", { waitUntil: "load" });
    const detail = {
      title: await page.title(),
      tools: await page.$$eval(".tool h3", (nodes) => nodes.map((node) => node.textContent)),
      schemas: await page.$$eval(".tool pre", (nodes) => nodes.length),
      horizontal_scroll: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
      axe: await axe(page),
    };
    await page.screenshot({ path: `${shots}/server-phone.png`, fullPage: true });
    const phoneIndex = await browser.newPage();
    watch(phoneIndex, log);
    await phoneIndex.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
    await phoneIndex.goto(base + "/", { waitUntil: "load" });
    detail.index_horizontal_scroll = await phoneIndex.evaluate(
      () => document.documentElement.scrollWidth > window.innerWidth,
    );
    // Text wider than its card (a long word in a description) would spill over the next one.
    detail.index_overflowing_cards = await phoneIndex.$$eval(".servers article", (cards) =>
      cards.filter((card) => card.scrollWidth > card.clientWidth).length,
    );
    await phoneIndex.screenshot({ path: `${shots}/index-phone.png`, fullPage: true });
    await phoneIndex.close();
    // Keyboard: the first Tab reaches the skip link.
    await page.keyboard.press("Tab");
    detail.first_focus = await page.evaluate(() => document.activeElement?.textContent);

    const plain = await browser.newPage();
    watch(plain, log);
    await plain.setJavaScriptEnabled(false);
    await plain.setViewport({ width: 1200, height: 900 });
    await plain.goto(base + "/", { waitUntil: "load" });
    const nojs = { servers: await servers(plain), live: await plain.$eval("#live", (node) => node.textContent) };
    await plain.screenshot({ path: `${shots}/index-nojs.png`, fullPage: true });

    say({
      event: "report",
      hostile_script_ran: hostile !== "undefined",
      index_axe: indexAxe,
      detail,
      nojs,
      html_validate: [...(await validate("/")), ...(await validate("/ui/servers/echo")), ...(await validate("/ui/servers/nope"))],
      ...log,
    });
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    say({ event: "error", message: String(error && error.stack ? error.stack : error) });
    process.exit(1);
  },
);
