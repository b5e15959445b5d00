import pino from "pino";
import type { Logger } from "pino";

/** JSON lines on the given file descriptor (1 = stdout), secrets redacted wherever they appear. */
export function createLogger(level: string, fd = 1): Logger {
  return pino(
    {
      level,
      base: { name: "lakefs-mirror" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          "secretAccessKey",
          "*.secretAccessKey",
          "token",
          "*.token",
          "authorization",
          "*.authorization",
        ],
        censor: "[redacted]",
      },
    },
    pino.destination({ fd, sync: true }),
  );
}
