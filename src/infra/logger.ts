import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/**
 * Paths pino blanks before anything is written. Secrets also never reach a log call in the first
 * place (connection lines go to DMs only); this is the second line of defence.
 */
export const REDACTED_PATHS = [
  "password",
  "secret",
  "token",
  "*.password",
  "*.secret",
  "*.token",
  "*.botToken",
  "*.appToken",
  "*.signingSecret",
  "*.appPassword",
  "*.clientSecret",
  "*.connection",
  "*.line",
  "*.authorization",
  "*.headers.authorization",
  "*.headers.cookie",
  "*.parameters",
  "config.slack",
  "config.teams",
  "config.oidc.clientSecret",
  // The seal keys (issue 16): whoever has one and the database reads every sealed original.
  "config.audit.sealKey",
  "config.audit.retiredSealKeys",
  // Their URLs may carry a password.
  "config.database",
  "config.redis",
  "config.targets[*].upstream",
];

export function createLogger(level: LoggerOptions["level"] = "info", destination?: pino.DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: "jitgate" },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
