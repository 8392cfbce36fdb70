import type { ServerResponse } from "node:http";

/**
 * Server-rendered pages (the console, the audit pages, the OIDC landing pages): plain HTML that
 * works without JavaScript, escaped by construction. Interpolated values are escaped unless they
 * are themselves `Html` (built by `html` or `raw`).
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

type Interpolated = Html | string | number | boolean | null | undefined | Interpolated[];

function render(value: Interpolated): string {
  if (value === null || value === undefined || value === false) return "";
  if (Array.isArray(value)) return value.map(render).join("");
  if (value instanceof Html) return value.text;
  return escapeHtml(String(value));
}

/** `html\`<p>${name}</p>\``: every interpolation is escaped; arrays are joined; null/false render nothing. */
export function html(strings: TemplateStringsArray, ...values: Interpolated[]): Html {
  let text = strings[0] ?? "";
  values.forEach((value, index) => {
    text += render(value) + (strings[index + 1] ?? "");
  });
  return new Html(text);
}

/** Markup that is already safe (a constant, or built elsewhere with `html`). Never for user input. */
export function raw(text: string): Html {
  return new Html(text);
}

export interface PageOptions {
  title: string;
  body: Html;
  /** Who is looking, shown in the header with a way to switch or log out. */
  viewer?: { name: string; switchHref?: string } | undefined;
  /** Which header link is the current page. */
  section?: "console" | "audit" | undefined;
  /** Extra tags for <head> (a stylesheet, a script of the page's own). */
  head?: Html;
}

/** The shared page shell: header navigation, one stylesheet, readable from phone width to desktop. */
export function page(options: PageOptions): Html {
  const current = (section: PageOptions["section"]) => (options.section === section ? raw(' aria-current="page"') : "");
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${options.title} · jitgate</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/assets/console.css">
${options.head ?? ""}
</head>
<body>
<header class="top">
  <a class="brand" href="/console">jitgate</a>
  <nav aria-label="Main">
    <a href="/console"${current("console")}>Chat</a>
    <a href="/audit"${current("audit")}>Audit</a>
  </nav>
  ${options.viewer ? html`<span class="viewer">${options.viewer.name}${options.viewer.switchHref ? html` · <a href="${options.viewer.switchHref}">switch</a>` : ""}</span>` : ""}
</header>
<main id="main">
${options.body}
</main>
</body>
</html>
`;
}

export function sendHtml(res: ServerResponse, status: number, body: Html, headers: Record<string, string> = {}): void {
  const text = body.text;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    // Pages are rendered per viewer; no inline scripts from anywhere else.
    "cache-control": "no-store",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(text);
}
