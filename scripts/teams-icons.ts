/**
 * Draws the Teams app icons in teams/: color.png (192×192, the accent colour with a white keyhole)
 * and outline.png (32×32, the keyhole in white on transparent), as Teams asks for them
 * (https://learn.microsoft.com/microsoftteams/platform/concepts/build-and-test/apps-package#app-icons).
 * Run with `npx tsx scripts/teams-icons.ts`; the output is committed.
 */
import { writeFileSync } from "node:fs";
import { deflateSync, crc32 } from "node:zlib";

type Rgba = [number, number, number, number];

/** A PNG of RGBA pixels (https://www.w3.org/TR/png-3/): signature, IHDR, one IDAT, IEND. */
function png(size: number, pixel: (x: number, y: number) => Rgba): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, "latin1");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA, no interlace
  const rows = Buffer.alloc(size * (1 + size * 4));
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) rows.set(pixel(x, y), y * (1 + size * 4) + 1 + x * 4);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", header), chunk("IDAT", deflateSync(rows)), chunk("IEND", Buffer.alloc(0))]);
}

/** How much of the pixel at (x, y) the keyhole covers (0..1), sampled 4×4, in a unit square. */
function keyhole(x: number, y: number, size: number): number {
  let inside = 0;
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      const u = (x + (i + 0.5) / 4) / size;
      const v = (y + (j + 0.5) / 4) / size;
      const head = (u - 0.5) ** 2 + (v - 0.4) ** 2 <= 0.16 ** 2;
      const halfWidth = 0.06 + (v - 0.45) * 0.18;
      const stem = v >= 0.45 && v <= 0.78 && Math.abs(u - 0.5) <= halfWidth;
      if (head || stem) inside += 1;
    }
  }
  return inside / 16;
}

const ACCENT: Rgba = [0x2e, 0x6b, 0xe6, 255];
const color = png(192, (x, y) => {
  const cover = keyhole(x, y, 192);
  return [0, 1, 2].map((c) => Math.round(ACCENT[c]! * (1 - cover) + 255 * cover)).concat(255) as Rgba;
});
const outline = png(32, (x, y) => [255, 255, 255, Math.round(keyhole(x, y, 32) * 255)]);
writeFileSync("teams/color.png", color);
writeFileSync("teams/outline.png", outline);
