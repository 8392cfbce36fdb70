/**
 * Classifies a shell command line (an exec request, or a line typed into an interactive shell)
 * against a target's `commands: { block, review }` rules. Rules are regular expressions (case
 * sensitive, as the shell is), e.g. `"rm -rf /"`, `"^sudo "`, `"^systemctl "`.
 *
 * A rule is tried against the whole line and against each simple command in it: the line is split
 * at unquoted `;`, `&`, `&&`, `||`, `|` and newlines, and the insides of `$( … )`, `` ` … ` `` and
 * `<( … )` are commands too. Each command is also tried with its quotes and backslashes removed
 * (`"r"m -rf /` is `rm -rf /`) and without leading variable assignments and wrappers (`env`,
 * `nohup`, `time`, `command`, `exec`, `builtin`), so `FOO=1 nohup sudo ls` meets `^sudo `.
 *
 * What it cannot see is what the shell will make of the line beyond that: aliases and functions,
 * scripts and what they run, variables expanded at run time (`$CMD`), here-documents fed to an
 * interpreter, `eval`, `base64 -d | sh`. It is a guard-rail for mistakes, not a sandbox.
 */

export type ShellVerdict = "allow" | "review" | "block";

export interface ShellRule {
  /** The rule as configured, for messages and the audit record. */
  source: string;
  pattern: RegExp;
}

export interface CompiledShellRules {
  block: ShellRule[];
  review: ShellRule[];
}

export interface ClassifiedCommand {
  /** The line, whitespace collapsed. */
  text: string;
  verdict: ShellVerdict;
  rule?: string | undefined;
}

/** Why a configured rule cannot be used, or undefined. */
export function shellRuleProblem(rule: string): string | undefined {
  try {
    new RegExp(rule);
    return undefined;
  } catch (error) {
    return `is not a valid regular expression (${(error as Error).message})`;
  }
}

export function compileShellRules(commands: { block: readonly string[]; review: readonly string[] }): CompiledShellRules {
  const compile = (source: string): ShellRule => ({ source, pattern: new RegExp(source) });
  return { block: commands.block.map(compile), review: commands.review.map(compile) };
}

export function hasShellRules(rules: CompiledShellRules): boolean {
  return rules.block.length > 0 || rules.review.length > 0;
}

const WRAPPERS = new Set(["env", "nohup", "time", "command", "exec", "builtin", "nice", "stdbuf"]);
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=\S*$/;

export function normalizeCommand(line: string): string {
  return line.replace(/\s+/g, " ").trim();
}

/**
 * Splits a line into its simple commands (see the module comment). Quotes are respected: a `;`
 * inside '…' or "…" does not split.
 */
export function commandSegments(line: string): string[] {
  const segments: string[] = [];
  const stack: string[][] = [[]];
  const closers: string[] = [];
  let quote: "'" | '"' | undefined;
  const current = () => stack[stack.length - 1]!;
  const cut = () => {
    const text = current().join("").trim();
    if (text !== "") segments.push(text);
    current().length = 0;
  };
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    const next = line[i + 1];
    if (quote === "'") {
      current().push(ch);
      if (ch === "'") quote = undefined;
      continue;
    }
    if (ch === "\\" && next !== undefined) {
      current().push(ch, next);
      i++;
      continue;
    }
    if (quote === '"' && ch === '"') {
      current().push(ch);
      quote = undefined;
      continue;
    }
    // Command substitutions open inside double quotes too.
    if ((ch === "$" || ch === "<" || ch === ">") && next === "(") {
      current().push(ch, next);
      stack.push([]);
      closers.push(")");
      i++;
      continue;
    }
    if (ch === "`") {
      if (closers[closers.length - 1] === "`") {
        cut();
        stack.pop();
        closers.pop();
        current().push(ch);
      } else {
        current().push(ch);
        stack.push([]);
        closers.push("`");
      }
      continue;
    }
    if (ch === ")" && closers[closers.length - 1] === ")" && quote === undefined) {
      cut();
      stack.pop();
      closers.pop();
      current().push(ch);
      continue;
    }
    if (quote === '"') {
      current().push(ch);
      continue;
    }
    if (ch === "'" || ch === '"') {
      quote = ch;
      current().push(ch);
      continue;
    }
    if (ch === ";" || ch === "\n" || ch === "|" || ch === "&") {
      // `&>` and `>&`, `|&` are redirections or pipes: still a boundary except `>&` / `&>`.
      if (ch === "&" && (line[i - 1] === ">" || next === ">")) {
        current().push(ch);
        continue;
      }
      cut();
      if ((ch === "|" || ch === "&") && next === ch) i++;
      continue;
    }
    if (ch === "(" || ch === "{" || ch === ")" || ch === "}") {
      // Subshells and groups: ( cmd ) and { cmd; } hold commands of their own.
      if ((ch === "(" || ch === "{") && current().join("").trim() === "") continue;
      if (ch === ")" || ch === "}") {
        cut();
        continue;
      }
    }
    current().push(ch);
  }
  while (stack.length > 0) {
    cut();
    stack.pop();
  }
  return segments;
}

function dequote(text: string): string {
  return text.replace(/\\(.)/g, "$1").replace(/['"]/g, "");
}

/** The command without leading `NAME=value` assignments and wrapper commands. */
function unwrap(text: string): string {
  const words = text.split(" ");
  let i = 0;
  while (i < words.length - 1 && (ASSIGNMENT.test(words[i]!) || WRAPPERS.has(words[i]!) || (words[i - 1] === "env" && words[i]!.startsWith("-")))) i++;
  return words.slice(i).join(" ");
}

/** Every text a rule is tried against. */
export function candidates(line: string): string[] {
  const texts = new Set<string>();
  const whole = normalizeCommand(line);
  texts.add(whole);
  texts.add(normalizeCommand(dequote(whole)));
  for (const segment of commandSegments(line)) {
    const normalized = normalizeCommand(segment);
    for (const form of [normalized, normalizeCommand(dequote(normalized))]) {
      texts.add(form);
      texts.add(unwrap(form));
    }
  }
  texts.delete("");
  return [...texts];
}

export function classifyCommand(line: string, rules: CompiledShellRules): ClassifiedCommand {
  const text = normalizeCommand(line);
  if (!hasShellRules(rules) || text === "") return { text, verdict: "allow" };
  const forms = candidates(line);
  for (const rule of rules.block) {
    if (forms.some((form) => rule.pattern.test(form))) return { text, verdict: "block", rule: rule.source };
  }
  for (const rule of rules.review) {
    if (forms.some((form) => rule.pattern.test(form))) return { text, verdict: "review", rule: rule.source };
  }
  return { text, verdict: "allow" };
}
