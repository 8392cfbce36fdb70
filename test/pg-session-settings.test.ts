import { describe, expect, it } from "vitest";
import { ProxyRefusal } from "../src/proxy/postgres/connection.js";
import { decodeFrontend } from "../src/proxy/postgres/frontend-codec.js";
import { pinnedSettingChange, upstreamStartupParams } from "../src/proxy/postgres/session-settings.js";

function parameterStatus(name: string, value: string): Buffer {
  const body = Buffer.from(`${name}\0${value}\0`);
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = 0x53;
  frame.writeInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  return frame;
}

function query(sql: Buffer): Buffer {
  const frame = Buffer.alloc(6 + sql.length);
  frame[0] = 0x51;
  frame.writeInt32BE(5 + sql.length, 1);
  sql.copy(frame, 5);
  return frame;
}

describe("start-up parameters for the upstream session", () => {
  it("pins both settings and passes the honest ones on", () => {
    expect(upstreamStartupParams({ user: "u", database: "d", application_name: "psql", client_encoding: "UTF8", options: "-c search_path=public --statement-timeout=5s", replication: "false" })).toEqual({
      application_name: "psql",
      client_encoding: "UTF8",
      options: "-c search_path=public -c statement_timeout=5s -c standard_conforming_strings=on",
    });
    expect(upstreamStartupParams({ user: "u", client_encoding: "SQL_ASCII" })).toEqual({ client_encoding: "UTF8", options: "-c standard_conforming_strings=on" });
  });

  it("keeps escaped white space inside an option's value", () => {
    expect(upstreamStartupParams({ options: "-c application_name=a\\ b" }).options).toBe("-c application_name=a\\ b -c standard_conforming_strings=on");
  });

  it.each([
    [{ client_encoding: "SJIS" }, /client_encoding stays UTF8/],
    [{ client_encoding: "auto" }, /client_encoding stays UTF8/],
    [{ STANDARD_CONFORMING_STRINGS: "off" }, /standard_conforming_strings stays on/],
    [{ options: "-c standard_conforming_strings=off" }, /standard_conforming_strings stays on/],
    [{ options: "-c  standard_conforming_strings=0" }, /standard_conforming_strings stays on/],
    [{ options: "--standard-conforming-strings=off" }, /standard_conforming_strings stays on/],
    [{ options: "-cclient_encoding=BIG5" }, /client_encoding stays UTF8/],
    [{ options: "-c search_path=x -c client\\_encoding=GBK" }, /client_encoding stays UTF8/],
    [{ options: "-c role=postgres" }, /role cannot be chosen/],
    [{ options: "-c session-authorization=postgres" }, /session_authorization cannot be chosen/],
    [{ options: "-d 5" }, /may only hold settings/],
    [{ options: "-c" }, /may only hold settings/],
  ])("refuses %j with 22023", (params, message) => {
    let refusal: unknown;
    try {
      upstreamStartupParams(params);
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(ProxyRefusal);
    expect(refusal).toMatchObject({ sqlState: "22023" });
    expect((refusal as Error).message).toMatch(message);
    expect((refusal as Error).message).toContain('rule "pinned-setting"');
  });
});

describe("ParameterStatus from the target", () => {
  it("ends the session only when a pinned setting has another value", () => {
    expect(pinnedSettingChange(parameterStatus("standard_conforming_strings", "on"))).toBeUndefined();
    expect(pinnedSettingChange(parameterStatus("client_encoding", "UTF8"))).toBeUndefined();
    expect(pinnedSettingChange(parameterStatus("TimeZone", "Asia/Tokyo"))).toBeUndefined();
    expect(pinnedSettingChange(parameterStatus("standard_conforming_strings", "off"))).toMatch(/standard_conforming_strings=off/);
    expect(pinnedSettingChange(parameterStatus("client_encoding", "SJIS"))).toMatch(/client_encoding=SJIS.*rule "pinned-setting"/);
  });
});

describe("statement bytes", () => {
  it("flags a Query whose text is not UTF-8, and only that", () => {
    const sjis = Buffer.concat([Buffer.from("select '"), Buffer.from([0x95, 0x5c]), Buffer.from("'; delete from orders; --'")]);
    expect(decodeFrontend(0x51, query(sjis))).toMatchObject({ type: "query", invalidUtf8: true });
    expect(decodeFrontend(0x51, query(Buffer.from("select '表'")))).not.toHaveProperty("invalidUtf8");
  });
});
