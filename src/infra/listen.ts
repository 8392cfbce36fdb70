import type { AddressInfo, Server } from "node:net";

/** Binds a server (HTTP or TCP) to a `host:port` from the configuration (`[::1]:3000` for IPv6). */
export async function listenOn(server: Server, address: string): Promise<AddressInfo> {
  const separator = address.lastIndexOf(":");
  const host = address.slice(0, separator).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(separator + 1));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}
