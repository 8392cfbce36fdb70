import type { Command } from "commander";
import { CliError, connectPlan, freshIdToken, login, logout, runPlan } from "./cli-login.js";

/** Runs a command's action; a CliError is one line on stderr and exit 1, never a stack trace. */
const guarded =
  <A extends unknown[]>(action: (...args: A) => Promise<void>) =>
  async (...args: A): Promise<void> => {
    try {
      await action(...args);
    } catch (error) {
      if (!(error instanceof CliError)) throw error;
      process.stderr.write(`jitgate: ${error.message}\n`);
      process.exitCode = 1;
    }
  };

/** `jitgate login | token | connect | logout`: the OIDC identity on the person's own machine. */
export function addIdentityCommands(program: Command): void {
  program
    .command("login")
    .description("log in at the organisation's OIDC provider (device code, or a browser with PKCE) and cache the tokens")
    .requiredOption("--gateway <url>", "the gateway's HTTP address, like https://jitgate.example.com")
    .option("--no-browser", "only print the URL to open")
    .option("--pkce", "use the authorization code flow with a loopback redirect even if the device flow is offered")
    .action(
      guarded(async (options: { gateway: string; browser: boolean; pkce?: boolean }) => {
        try {
          new URL(options.gateway);
        } catch {
          throw new CliError(`--gateway ${options.gateway} is not a URL like https://jitgate.example.com`);
        }
        await login({ gateway: options.gateway, browser: options.browser, pkce: options.pkce ?? false });
      }),
    );

  program
    .command("token")
    .description("print a fresh ID token (refreshed when it has expired or is about to)")
    .action(
      guarded(async () => {
        process.stdout.write(`${(await freshIdToken()).idToken}\n`);
      }),
    );

  program
    .command("connect <target>")
    .description("print the psql or ssh command that logs in with your OIDC identity; --exec runs it")
    .option("--exec", "run psql or ssh now, with the token in its environment (arguments after -- go to it)")
    .allowExcessArguments(true)
    .action(
      guarded(async (target: string, options: { exec?: boolean }, command: Command) => {
        const plan = await connectPlan(target);
        if (!options.exec) {
          process.stdout.write(`${plan.line}\n`);
          return;
        }
        process.exitCode = await runPlan(plan, command.args.slice(1));
      }),
    );

  program
    .command("logout")
    .description("forget the cached tokens")
    .action(() => {
      process.stdout.write(logout() ? "logged out\n" : "not logged in\n");
    });
}
