export * from "./broker.js";
export * from "./errors.js";
export * from "./events.js";
export * from "./clock.js";
export * from "./scheduler.js";
export * from "./policy.js";
export * from "./audit.js";
export * from "./credentials.js";
