import { spawn } from "node:child_process";

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command and collects its output, whatever its exit code. Resolves on 'close', not 'exit':
 * Node may fire 'exit' before the child's stdio is drained, and the last lines would be lost.
 */
export function runProcess(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<Run & { endedAt: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 25_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, endedAt: Date.now() });
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** A command we type into (an ssh client with -tt, say): `waitFor` output, then `type` the next keys. */
export function interactiveProcess(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let seen = 0;
  const listeners = new Set<() => void>();
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
    for (const listener of listeners) listener();
  });
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<Run>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  void exited.then(() => clearTimeout(killer));
  return {
    exited,
    /** Resolves when output after the last match matches `pattern`. */
    waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(stdout.slice(seen));
          if (!match) return false;
          seen += match.index + match[0].length;
          listeners.delete(listener);
          clearTimeout(timer);
          resolve();
          return true;
        };
        const listener = () => void check();
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`no ${pattern} in output: ${JSON.stringify(stdout.slice(seen))} (stderr ${JSON.stringify(stderr)})`));
        }, timeoutMs);
        if (!check()) listeners.add(listener);
      });
    },
    type(keys: string): void {
      child.stdin.write(keys);
    },
  };
}
