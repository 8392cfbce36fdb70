import { describe, expect, it } from "vitest";
import { StepUpRequired } from "../src/broker/errors.js";
import { errorView } from "../src/bot/commands.js";
import { linkified, messageHtml } from "../src/bot/render/html.js";
import { html } from "../src/infra/web/html.js";

const text = (parts: ReturnType<typeof linkified>) => html`${parts}`.text;

describe("console HTML renderer", () => {
  it("links a step-up answer's sign-in link, and keeps the sentence around it as text", () => {
    const link = "https://jitgate.example.com/oidc/approve?challenge=abc_DEF-123";
    const error = new StepUpRequired("orders-db", "abc_DEF-123", link, new Date(), 600_000);
    const { view } = errorView(error);
    const rendered = messageHtml(view, { id: "m1" }).text;
    expect(rendered).toContain(`<a href="${link}">${link}</a> within 10m to sign in again`);
    expect(rendered).toContain("Approving access to orders-db needs a fresh sign-in: open ");
  });

  it("escapes everything that is not a URL, and never links other schemes or markup", () => {
    expect(text(linkified(`<b>x</b> javascript:alert(1) http://a.example/x?y=1&z="2" end.`))).toBe(
      `&lt;b&gt;x&lt;/b&gt; javascript:alert(1) <a href="http://a.example/x?y=1&amp;z=">http://a.example/x?y=1&amp;z=</a>&quot;2&quot; end.`,
    );
    expect(text(linkified("see https://a.example/path."))).toBe(`see <a href="https://a.example/path">https://a.example/path</a>.`);
    expect(text(linkified("no links here"))).toBe("no links here");
  });

  it("renders a reason with markup as text in every part of a message", () => {
    const rendered = messageHtml(
      { text: "<img src=x onerror=alert(1)>", title: "<i>t</i>", lines: ["<script>1</script>"], code: "</code><script>2</script>", fields: [{ label: "<l>", value: "<v>" }] },
      { id: "m2" },
    ).text;
    expect(rendered).not.toMatch(/<(script|img|i|l|v)[ >]/);
    expect(rendered).toContain("&lt;script&gt;1&lt;/script&gt;");
  });
});
