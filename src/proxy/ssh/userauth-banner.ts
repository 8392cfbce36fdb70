import { createRequire } from "node:module";
import type { Connection } from "ssh2";

/**
 * Sends SSH_MSG_USERAUTH_BANNER (RFC 4252 §5.4), which the server may send at any time before
 * authentication succeeds and OpenSSH prints to the user. It is how a refusal can say *why*
 * ("no live grant for web-1; request one with …"): a userauth failure carries no text.
 *
 * ssh2 only sends the static banner of its configuration, so this writes the packet through the
 * connection's protocol object, an internal of ssh2 1.x. If the internals are not what we expect,
 * nothing is sent and the refusal stays silent (the client still sees "Permission denied").
 */
const require = createRequire(import.meta.url);
let sendPacket: ((protocol: unknown, packet: Buffer) => void) | undefined;
try {
  sendPacket = (require("ssh2/lib/protocol/utils.js") as { sendPacket?: typeof sendPacket }).sendPacket;
} catch {
  sendPacket = undefined;
}

const SSH_MSG_USERAUTH_BANNER = 53;

interface ProtocolInternals {
  _packetRW?: { write?: { allocStart: number; alloc(length: number): Buffer; finalize(packet: Buffer): Buffer } };
}

export function sendUserauthBanner(connection: Connection, message: string): boolean {
  const protocol = (connection as unknown as { _protocol?: ProtocolInternals })._protocol;
  const write = protocol?._packetRW?.write;
  if (!sendPacket || !write) return false;
  const text = message.endsWith("\r\n") ? message : `${message.replace(/\n/g, "\r\n")}\r\n`;
  const length = Buffer.byteLength(text);
  const start = write.allocStart;
  const packet = write.alloc(1 + 4 + length + 4);
  packet[start] = SSH_MSG_USERAUTH_BANNER;
  packet.writeUInt32BE(length, start + 1);
  packet.write(text, start + 5, length, "utf8");
  packet.writeUInt32BE(0, start + 5 + length); // empty language tag
  sendPacket(protocol, write.finalize(packet));
  return true;
}
