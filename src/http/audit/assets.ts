import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

/**
 * The audit pages' static files: asciinema-player's bundle (served from the installed package, so
 * its version is the lock file's), the few lines that mount it, and the pages' stylesheet. Kept as
 * strings here rather than files next to the code so `tsc` output carries them without a copy step.
 */

export interface Asset {
  type: string;
  body: Buffer;
}

/**
 * Mounts a player on every `<div data-cast="…">` once the page is parsed (the CSP allows no inline
 * script, hence a file). The recording's text stays in the page, folded away, for find-in-page.
 */
const REPLAY_JS = `"use strict";
(function () {
  if (typeof AsciinemaPlayer === "undefined") return;
  document.querySelectorAll("[data-cast]").forEach(function (element) {
    AsciinemaPlayer.create(element.getAttribute("data-cast"), element, { fit: "width", idleTimeLimit: 2 });
    element.classList.add("mounted");
    var text = document.getElementById(element.getAttribute("data-text") || "");
    if (text) text.open = false;
  });
})();
`;

const AUDIT_CSS = `/* The audit pages (works with or without the console's stylesheet). */
.audit { max-width: 82rem; margin: 0 auto; padding: 0 1rem 3rem; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1c2430; }
.audit h1 { font-size: 1.5rem; margin: 1rem 0 .5rem; overflow-wrap: anywhere; }
.audit h2 { font-size: 1.15rem; margin: 1.75rem 0 .5rem; }
.audit h3 { font-size: 1rem; margin: 1rem 0 .25rem; }
.audit a { color: #0b57b0; }
.audit a:focus-visible, .audit button:focus-visible, .audit input:focus-visible, .audit select:focus-visible, .audit summary:focus-visible, .audit .player:focus-within { outline: 3px solid #f0a30a; outline-offset: 2px; }
.audit .back { margin: .75rem 0 0; }
.audit .lead { color: #4a5566; margin: 0 0 1rem; }
.audit form.search { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .75rem 1rem; align-items: end; padding: 1rem; background: #f3f5f8; border: 1px solid #d5dbe3; border-radius: 6px; }
.audit form.search label { display: block; font-weight: 600; font-size: .85rem; margin-bottom: .2rem; }
.audit form.search input, .audit form.search select { width: 100%; box-sizing: border-box; font: inherit; padding: .4rem .5rem; border: 1px solid #9aa6b5; border-radius: 4px; background: #fff; min-height: 2.4rem; }
.audit form.search .actions { display: flex; gap: .75rem; align-items: center; }
.audit button { font: inherit; font-weight: 600; padding: .45rem 1.1rem; min-height: 2.4rem; border-radius: 4px; border: 1px solid #0b57b0; background: #0b57b0; color: #fff; cursor: pointer; }
.audit .hint { font-size: .8rem; color: #4a5566; font-weight: 400; }
.audit .error { border-left: 4px solid #b42318; background: #fdecea; padding: .6rem .8rem; margin: 1rem 0; }
.audit .notice { border-left: 4px solid #0b57b0; background: #eaf2fc; padding: .6rem .8rem; margin: 1rem 0; }
.audit .table-wrap { overflow-x: auto; margin: .5rem 0; border: 1px solid #d5dbe3; border-radius: 6px; background: #fff; }
.audit table { border-collapse: collapse; width: 100%; font-size: .9rem; }
.audit caption { text-align: left; padding: .5rem .75rem; font-size: .85rem; color: #4a5566; }
.audit th, .audit td { text-align: left; vertical-align: top; padding: .4rem .75rem; border-top: 1px solid #e3e7ed; }
.audit thead th { background: #f3f5f8; border-top: 0; white-space: nowrap; }
.audit td time, .audit .nowrap { white-space: nowrap; }
.audit td.statement-cell { min-width: 16rem; }
.audit td.what { min-width: 14rem; }
.audit td.num { text-align: right; font-variant-numeric: tabular-nums; }
.audit code, .audit pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85rem; }
.audit code.statement, .audit pre.statement { white-space: pre-wrap; overflow-wrap: anywhere; }
.audit pre.statement { margin: 0; max-height: 12rem; overflow: auto; }
.audit pre.held-text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 70vh; overflow: auto; padding: 0.5rem; border: 1px solid #ccc; }
.audit code.data { overflow-wrap: anywhere; color: #4a5566; }
.audit dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: .5rem 0; }
.audit dl.facts dt { font-weight: 600; color: #4a5566; }
.audit dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.audit dl.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .5rem; margin: .5rem 0; }
.audit dl.stats div { border: 1px solid #d5dbe3; border-radius: 6px; padding: .4rem .6rem; background: #fff; }
.audit dl.stats dt { font-size: .8rem; color: #4a5566; }
.audit dl.stats dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.audit ol.timeline { list-style: none; padding: 0; margin: .5rem 0; border-left: 3px solid #d5dbe3; }
.audit ol.timeline li { position: relative; padding: .35rem 0 .6rem 1rem; }
.audit ol.timeline li::before { content: ""; position: absolute; left: -.45rem; top: .75rem; width: .6rem; height: .6rem; border-radius: 50%; background: #0b57b0; }
.audit ol.timeline .when { display: block; font-size: .8rem; color: #4a5566; }
.audit ol.timeline .kind { font-weight: 600; margin-right: .35rem; }
.audit .chain { font-size: .75rem; color: #6b7685; margin-left: .35rem; white-space: nowrap; }
.audit .none { color: #6b7685; }
.audit .note { font-size: .85rem; color: #4a5566; font-style: italic; }
.audit .verdict, .audit .outcome { font-weight: 600; }
.audit .verdict-block, .audit .outcome-denied, .audit .outcome-timed_out { color: #b42318; }
.audit .verdict-review, .audit .outcome-held { color: #9a5b00; }
.audit .verdict-allow, .audit .outcome-approved { color: #17703a; }
.audit .pager { display: flex; gap: 1rem; margin: 1rem 0; }
.audit .recording { margin: 1rem 0 2rem; }
.audit .player { margin: .5rem 0; max-width: 60rem; }
.audit details.text-output pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #10151c; color: #e6edf3; padding: .75rem; border-radius: 6px; max-height: 30rem; overflow: auto; }
.audit details summary { cursor: pointer; padding: .25rem 0; }
.audit tr.result-row > td { border-top: 0; padding-top: 0; background: #fafbfc; }
.audit table.result-rows td { white-space: pre-wrap; overflow-wrap: anywhere; }
.audit mark.revealed { background: #fff2a8; color: inherit; outline: 1px solid #c9a400; }
.audit form.reveal { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .5rem 0; }
.audit form.reveal label { font-weight: 600; font-size: .85rem; }
.audit form.reveal input[name="reason"] { flex: 1 1 14rem; min-width: 0; box-sizing: border-box; font: inherit; padding: .4rem .5rem; border: 1px solid #9aa6b5; border-radius: 4px; min-height: 2.4rem; }
.audit form.reveal .hint { flex-basis: 100%; margin: 0; }
@media (max-width: 640px) {
  .audit { padding: 0 .6rem 2rem; font-size: 14px; }
  .audit dl.facts { gap: .15rem .75rem; }
  .audit th, .audit td { padding: .35rem .5rem; }
  /* Tables become one card per row, each cell with its column's name. */
  .audit table.stack thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
  .audit table.stack tr { display: block; border-top: 1px solid #d5dbe3; padding: .35rem 0; }
  .audit table.stack tbody tr:first-child { border-top: 0; }
  .audit table.stack td { display: block; position: relative; border: 0; padding: .1rem .6rem .1rem 6.6rem; min-width: 0; text-align: left; overflow-wrap: anywhere; }
  .audit table.stack td::before { content: attr(data-label); position: absolute; left: .6rem; width: 5.5rem; font-weight: 600; color: #4a5566; font-size: .85rem; }
  .audit table.stack td.nowrap, .audit table.stack td time { white-space: normal; }
  .audit table.stack td:empty { display: none; }
  /* A statement's recorded result under its card: a plain table again, scrolled within its frame. */
  .audit table.stack tr.result-row > td { padding: .1rem .6rem; }
  .audit table.stack tr.result-row > td::before, .audit table.stack table.result-rows td::before { content: none; }
  .audit table.stack table.result-rows thead { position: static; width: auto; height: auto; overflow: visible; clip-path: none; }
  .audit table.stack table.result-rows tr { display: table-row; padding: 0; }
  .audit table.stack table.result-rows td { display: table-cell; padding: .3rem .5rem; border-top: 1px solid #e3e7ed; overflow-wrap: anywhere; }
}
`;

const require = createRequire(import.meta.url);
const PLAYER_FILES: Record<string, { specifier: string; type: string }> = {
  "asciinema-player.min.js": { specifier: "asciinema-player/dist/bundle/asciinema-player.min.js", type: "text/javascript; charset=utf-8" },
  "asciinema-player.css": { specifier: "asciinema-player/dist/bundle/asciinema-player.css", type: "text/css; charset=utf-8" },
};

const loaded = new Map<string, Promise<Asset | undefined>>([
  ["replay.js", Promise.resolve({ type: "text/javascript; charset=utf-8", body: Buffer.from(REPLAY_JS) })],
  ["audit.css", Promise.resolve({ type: "text/css; charset=utf-8", body: Buffer.from(AUDIT_CSS) })],
]);

/** An asset by its file name, or undefined for a name that is not one (never a path on disk). */
export function auditAsset(name: string): Promise<Asset | undefined> {
  let asset = loaded.get(name);
  if (!asset) {
    const file = Object.hasOwn(PLAYER_FILES, name) ? PLAYER_FILES[name] : undefined;
    if (!file) return Promise.resolve(undefined);
    asset = readFile(require.resolve(file.specifier)).then((body) => ({ type: file.type, body }));
    // A failed read is not cached: the next request tries again.
    asset.catch(() => loaded.delete(name));
    loaded.set(name, asset);
  }
  return asset;
}
