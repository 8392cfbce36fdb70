/**
 * Classifies a shell command line (an exec request, or a line typed into an interactive shell)
 * against a target's `commands: { block, review, unverifiable, shell }` rules. `block` and
 * `review` are regular expressions (case sensitive, as the shell is), e.g. `"^rm "`, `"^sudo "`.
 *
 * The line is parsed by a real bash grammar: tree-sitter-bash gives the syntax tree, and mvdan/sh
 * (sh-syntax) must accept the same text too; what either cannot parse is unverifiable. Every
 * simple command anywhere in the tree is resolved the way the shell would run it (see
 * `analyzeCommand` and the README's "Command rules"): quotes and backslashes removed, a path
 * reduced to its last part, wrappers (`sudo`, `env`, `nice`, `xargs`, …) unwrapped with their
 * options, and code handed to `sh -c`, `eval`, `su -c`, `trap`, `alias`, `watch` and
 * `find -exec` parsed in turn. Rules are tried against each resolved command and the whole line.
 *
 * What cannot be known before the line runs is not guessed at: a command name that is not a
 * literal (`$x f`, `$(echo touch) f`), `eval` of something not literal, `source`, and text fed to
 * a shell or interpreter on its standard input are *unverifiable*, a verdict of its own. A shell
 * started without a command (`bash`, `bash -i`, `sudo -s`) is a *shell*: what it will run is typed
 * later, and no classifier of lines can know it.
 */
import { createRequire } from "node:module";
import { parse as parseWithMvdanSh } from "sh-syntax";
import { Language, Parser, type Node } from "web-tree-sitter";

export type ShellVerdict = "allow" | "review" | "block";

export interface ShellRule {
  /** The rule as configured, for messages and the audit record. */
  source: string;
  pattern: RegExp;
}

export interface CompiledShellRules {
  block: ShellRule[];
  review: ShellRule[];
  /** The verdict for what cannot be checked before it runs (default review). */
  unverifiable: ShellVerdict;
  /** The verdict for starting an interactive shell (default review). */
  shell: ShellVerdict;
}

export interface ClassifiedCommand {
  /** The line, whitespace collapsed. */
  text: string;
  verdict: ShellVerdict;
  /** The rule that decided: a configured pattern, `unverifiable: <why>` or `interactive shell`. */
  rule?: string | undefined;
  /** Why the verdict is what it is: a configured rule, an unverifiable part, a shell start. */
  reason?: "rule" | "unverifiable" | "shell" | undefined;
  /** The line starts an interactive shell (whatever decided the verdict). */
  startsShell?: boolean | undefined;
}

/** A simple command as the shell would run it. */
export interface ResolvedCommand {
  /** The command's name: quotes and backslashes removed, a path reduced to its last part. */
  name: string;
  /** `name` and its arguments (literal ones dequoted, the others as written), space separated. */
  text: string;
}

export interface CommandAnalysis {
  commands: ResolvedCommand[];
  /** What cannot be known before it runs, each with why. */
  unverifiable: string[];
  /** Interactive shells (or interpreters) the line starts, as written. */
  shells: string[];
}

export const UNVERIFIABLE_PREFIX = "unverifiable: ";
export const SHELL_RULE = "interactive shell";

/** Why a configured rule cannot be used, or undefined. */
export function shellRuleProblem(rule: string): string | undefined {
  try {
    new RegExp(rule);
    return undefined;
  } catch (error) {
    return `is not a valid regular expression (${(error as Error).message})`;
  }
}

export function compileShellRules(commands: {
  block: readonly string[];
  review: readonly string[];
  unverifiable?: ShellVerdict | undefined;
  shell?: ShellVerdict | undefined;
}): CompiledShellRules {
  const compile = (source: string): ShellRule => ({ source, pattern: new RegExp(source) });
  return {
    block: commands.block.map(compile),
    review: commands.review.map(compile),
    unverifiable: commands.unverifiable ?? "review",
    shell: commands.shell ?? "review",
  };
}

export function hasShellRules(rules: CompiledShellRules): boolean {
  return rules.block.length > 0 || rules.review.length > 0;
}

export function normalizeCommand(line: string): string {
  return line.replace(/\s+/g, " ").trim();
}

// ------------------------------------------------------------------ grammar

let grammar: Promise<Parser> | undefined;

/** The bash grammar (WASM), loaded once. */
function bashParser(): Promise<Parser> {
  grammar ??= (async () => {
    await Parser.init();
    const require = createRequire(import.meta.url);
    const language = await Language.load(require.resolve("tree-sitter-bash/tree-sitter-bash.wasm"));
    const parser = new Parser();
    parser.setLanguage(language);
    return parser;
  })();
  return grammar;
}

/** Loads the grammars ahead of the first command (the first parse otherwise pays for it). */
export async function loadShellGrammar(): Promise<void> {
  await bashParser();
  await parseWithMvdanSh("true");
}

/** Nesting of `sh -c`, `eval` and the like beyond which a line is unverifiable. */
const MAX_DEPTH = 8;

const SHELLS = new Set(["sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh", "rbash"]);
const INTERPRETERS = new Set([
  "python", "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "tclsh", "wish", "Rscript", "R", "irb", "psql", "mysql", "sqlite3", "jshell", "ghci",
]);
/** Options of interpreters that take a program as their value. */
const INLINE_CODE = new Set(["-c", "-e", "-E", "-r", "--eval", "-p", "--print", "--command"]);

/** A word of a command: its literal value when the shell would see one, and its text as written. */
interface Word {
  literal: string | undefined;
  source: string;
}

/** How a wrapper's options are read: which take a value, which do not; anything else is unknown. */
interface OptionSpec {
  flags?: string;
  valued?: string;
  longFlags?: string[];
  longValued?: string[];
  /** Words after the options that come before the wrapped command (timeout's duration). */
  positional?: number;
  /** `NAME=value` words may precede the command (env, sudo). */
  assignments?: boolean;
  /** A numeric option like nice's `-5`. */
  numeric?: boolean;
}

const WRAPPERS: Record<string, OptionSpec> = {
  sudo: {
    flags: "AbEHKknPSsilv",
    valued: "CDghpRrTtUu",
    longFlags: ["--preserve-env", "--login", "--shell", "--non-interactive", "--stdin", "--background", "--askpass", "--set-home", "--reset-timestamp", "--remove-timestamp", "--validate", "--list"],
    longValued: ["--user", "--group", "--chdir", "--prompt", "--close-from", "--host", "--role", "--type", "--command-timeout", "--other-user"],
    assignments: true,
  },
  doas: { flags: "Lns", valued: "Cu" },
  env: {
    flags: "i0v",
    valued: "uCP",
    longFlags: ["--ignore-environment", "--null", "--debug"],
    longValued: ["--unset", "--chdir"],
    assignments: true,
  },
  time: { flags: "pavq", valued: "fo", longFlags: ["--append", "--verbose", "--portability", "--quiet"], longValued: ["--format", "--output"] },
  nice: { valued: "n", longValued: ["--adjustment"], numeric: true },
  timeout: { flags: "v", valued: "sk", longFlags: ["--preserve-status", "--foreground", "--verbose"], longValued: ["--signal", "--kill-after"], positional: 1 },
  nohup: {},
  stdbuf: { valued: "ioe", longValued: ["--input", "--output", "--error"] },
  setsid: { flags: "cfw", longFlags: ["--ctty", "--fork", "--wait"] },
  ionice: { flags: "t", valued: "cnpPu", longFlags: ["--ignore"], longValued: ["--class", "--classdata", "--pid", "--pgid", "--uid"] },
  chroot: { longFlags: ["--skip-chdir"], longValued: ["--userspec", "--groups"], positional: 1 },
  command: { flags: "pvV" },
  builtin: {},
  coproc: {},
  exec: { flags: "cl", valued: "a" },
  xargs: {
    flags: "0prtxo",
    valued: "EILnPsda",
    longFlags: ["--null", "--interactive", "--no-run-if-empty", "--verbose", "--exit", "--show-limits", "--open-tty"],
    longValued: ["--arg-file", "--delimiter", "--eof", "--max-lines", "--max-args", "--max-procs", "--max-chars", "--process-slot-var", "--replace"],
  },
  watch: {
    flags: "bcdegtwx",
    valued: "nq",
    longFlags: ["--beep", "--color", "--differences", "--errexit", "--chgexit", "--no-title", "--no-wrap", "--exec", "--precise"],
    longValued: ["--interval"],
  },
};

type Options = { ok: true; seen: Map<string, string | true>; rest: Word[] } | { ok: false; why: string };

/** Reads a wrapper's options; an option it does not know makes the rest unknowable. */
function readOptions(name: string, args: Word[], spec: OptionSpec): Options {
  const seen = new Map<string, string | true>();
  let i = 0;
  const unknown = (word: string): Options => ({ ok: false, why: `${name} option ${word} is not one jitgate knows` });
  while (i < args.length) {
    const word = args[i]!.literal;
    if (word === undefined) return { ok: false, why: `${name} has an argument that is not a literal: ${args[i]!.source}` };
    if (word === "--") {
      i++;
      break;
    }
    if (word.startsWith("--")) {
      const [option, value] = word.split(/=(.*)/s, 2) as [string, string | undefined];
      if (spec.longValued?.includes(option)) {
        if (value === undefined) {
          seen.set(option, args[i + 1]?.literal ?? "");
          i += 2;
        } else {
          seen.set(option, value);
          i++;
        }
      } else if (spec.longFlags?.includes(option)) {
        seen.set(option, true);
        i++;
      } else return unknown(word);
      continue;
    }
    if (word.startsWith("-") && word.length > 1) {
      if (spec.numeric && /^-\d+$/.test(word)) {
        i++;
        continue;
      }
      let consumed = 1;
      for (let k = 1; k < word.length; k++) {
        const letter = word[k]!;
        if (spec.flags?.includes(letter)) {
          seen.set(`-${letter}`, true);
          continue;
        }
        if (spec.valued?.includes(letter)) {
          const attached = word.slice(k + 1);
          if (attached !== "") seen.set(`-${letter}`, attached);
          else {
            seen.set(`-${letter}`, args[i + 1]?.literal ?? "");
            consumed = 2;
          }
          break;
        }
        return unknown(word);
      }
      i += consumed;
      continue;
    }
    if (word === "-" && name === "env") {
      i++;
      continue;
    }
    break;
  }
  if (spec.assignments) while (i < args.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(args[i]!.literal ?? "")) i++;
  i += spec.positional ?? 0;
  return { ok: true, seen, rest: args.slice(i) };
}

/** Whether a command name's characters are all literal (no globs, braces, tilde, expansions). */
const UNQUOTED_SPECIAL = /[*?[\]{}~$`]/;

/**
 * The value the shell gives a word, when it is a literal: `'to'uch`, `t\ouch` and `"touch"` are
 * all `touch`. Anything with an expansion, a glob or a substitution has no literal value.
 */
function literalOf(node: Node, commandName = false): string | undefined {
  switch (node.type) {
    case "word":
    case "number": {
      const text = node.text;
      // Characters escaped by a backslash are literal; the others may be special when unquoted.
      const unescaped = text.replace(/\\[\s\S]/g, "");
      if (commandName && UNQUOTED_SPECIAL.test(unescaped)) return undefined;
      if (/[$`]/.test(unescaped)) return undefined;
      return text.replace(/\\\n/g, "").replace(/\\([\s\S])/g, "$1");
    }
    case "raw_string":
      return node.text.slice(1, -1);
    case "string": {
      let value = "";
      for (const child of node.children) {
        if (!child) continue;
        if (child.type === '"') continue;
        if (child.type !== "string_content") return undefined;
        value += child.text.replace(/\\\n/g, "").replace(/\\([$`"\\])/g, "$1");
      }
      return value;
    }
    case "concatenation": {
      let value = "";
      for (const child of node.children) {
        if (!child) continue;
        const part = literalOf(child, commandName);
        if (part === undefined) return undefined;
        value += part;
      }
      return value;
    }
    default:
      return undefined;
  }
}

/** Whether a redirection gives the command text on its standard input. */
function feedsInput(redirect: Node): boolean {
  if (redirect.type === "heredoc_redirect" || redirect.type === "herestring_redirect") return true;
  if (redirect.type !== "file_redirect") return false;
  const fd = redirect.childForFieldName("descriptor");
  if (fd && fd.text !== "0") return false;
  return redirect.children.some((c) => c && (c.type === "<" || c.type === "<>" || c.type === "<&"));
}

function basename(path: string): string {
  const parts = path.split("/");
  return parts[parts.length - 1]!;
}

/** Walks one parsed text, collecting resolved commands, unverifiable parts and shells. */
class Analysis {
  readonly commands: ResolvedCommand[] = [];
  readonly unverifiable: string[] = [];
  readonly shells: string[] = [];
  /** Every text parsed (the line and the code nested in it), for the second grammar's check. */
  readonly texts: string[] = [];

  constructor(private readonly parser: Parser) {}

  code(text: string, depth: number): void {
    if (depth > MAX_DEPTH) {
      this.unverifiable.push(`nested more than ${MAX_DEPTH} levels deep`);
      return;
    }
    this.texts.push(text);
    const tree = this.parser.parse(text);
    if (!tree) {
      this.unverifiable.push("the line could not be parsed");
      return;
    }
    try {
      this.#walk(tree.rootNode, false, depth);
    } finally {
      tree.delete();
    }
  }

  #walk(node: Node, fed: boolean, depth: number): void {
    if (node.type === "ERROR" || node.isMissing) {
      this.unverifiable.push(`not valid shell syntax near ${JSON.stringify(node.text.slice(0, 40))}`);
      return;
    }
    switch (node.type) {
      case "command":
        this.#command(node, fed, depth);
        return;
      case "pipeline": {
        let previous: Node | null = null;
        for (const child of node.children) {
          if (!child) continue;
          const afterPipe = previous !== null && (previous.type === "|" || previous.type === "|&");
          // `cat <<EOF | sh`: the pipe comes first inside the here-document's node.
          this.#walk(child, fed || afterPipe, depth);
          previous = child;
        }
        return;
      }
      case "redirected_statement": {
        const body = node.childForFieldName("body");
        const redirects = node.children.filter((child): child is Node => !!child && !(body && child.equals(body)));
        const input = redirects.some(feedsInput);
        if (body) this.#walk(body, fed || input, depth);
        for (const redirect of redirects) this.#walk(redirect, false, depth);
        return;
      }
      case "process_substitution": {
        // `>( … )` reads what the outer command writes.
        const writes = node.children[0]?.type === ">(";
        for (const child of node.children) if (child) this.#walk(child, writes, depth);
        return;
      }
      case "command_substitution":
        for (const child of node.children) if (child) this.#walk(child, false, depth);
        return;
      default:
        for (const child of node.children) if (child) this.#walk(child, fed, depth);
    }
  }

  #command(node: Node, fed: boolean, depth: number): void {
    // Substitutions in assignments, the name and the arguments run first, on their own.
    for (const child of node.children) if (child) this.#walk(child, false, depth);
    const name = node.childForFieldName("name");
    if (!name) return;
    // `bash <<< 'touch f'`: a here-string is a child of the command itself.
    if (node.children.some((child) => child && feedsInput(child))) fed = true;
    const words: Word[] = [];
    let seenName = false;
    for (const child of node.children) {
      if (!child) continue;
      if (child.equals(name)) {
        const inner = child.namedChildren[0] ?? child;
        words.push({ literal: literalOf(inner, true), source: child.text });
        seenName = true;
        continue;
      }
      if (!seenName || !child.isNamed || child.type.endsWith("_redirect")) continue;
      words.push({ literal: literalOf(child), source: child.text });
    }
    this.#invocation(words, fed, depth);
  }

  /** Resolves a command and what it runs in turn: wrappers, `sh -c`, `eval`, `find -exec`. */
  #invocation(initial: Word[], fed: boolean, depth: number): void {
    let words = initial;
    let moreArguments = false;
    for (let hops = 0; hops < 16 && words.length > 0; hops++) {
      const first = words[0]!;
      if (first.literal === undefined) {
        this.unverifiable.push(`the command name is not a literal: ${first.source}`);
        return;
      }
      const name = basename(first.literal);
      if (name === "") {
        this.unverifiable.push(`the command name is not a literal: ${first.source}`);
        return;
      }
      const args = words.slice(1);
      // xargs adds arguments read at run time: the text says so with a last word "…".
      const text = [name, ...args.map((w) => w.literal ?? w.source), ...(moreArguments ? ["…"] : [])].join(" ");
      this.commands.push({ name, text });
      const written = words.map((w) => w.source).join(" ");
      if (SHELLS.has(name) || (name === "busybox" && SHELLS.has(args[0]?.literal ?? ""))) {
        this.#shell(name === "busybox" ? args.slice(1) : args, fed, depth, written);
        return;
      }
      if (INTERPRETERS.has(name)) {
        if (args.some((w) => w.literal === undefined || INLINE_CODE.has(w.literal))) this.unverifiable.push(`${name} runs code given inline: ${written}`);
        else if (fed && args.every((w) => w.literal!.startsWith("-"))) this.unverifiable.push(`text is fed to ${name}: ${written}`);
        else if (!fed && args.every((w) => w.literal!.startsWith("-"))) this.shells.push(written);
        return;
      }
      switch (name) {
        case "eval":
          if (args.some((w) => w.literal === undefined)) this.unverifiable.push(`eval of something not literal: ${written}`);
          else this.code(args.map((w) => w.literal).join(" "), depth + 1);
          return;
        case "source":
        case ".":
          this.unverifiable.push(`${name} runs a file the gateway cannot see, and may redefine commands: ${written}`);
          return;
        case "alias":
          for (const arg of args) {
            if (arg.literal === undefined) this.unverifiable.push(`alias of something not literal: ${written}`);
            // The alias is a prefix: it is checked as if arguments ("…") followed it.
            else if (arg.literal.includes("=")) this.code(`${arg.literal.slice(arg.literal.indexOf("=") + 1)} …`, depth + 1);
          }
          return;
        case "trap": {
          const operands = args[0]?.literal === "--" ? args.slice(1) : args;
          if (operands.length < 2 || operands[0]!.literal?.startsWith("-")) return;
          if (operands[0]!.literal === undefined) this.unverifiable.push(`trap of something not literal: ${written}`);
          else this.code(operands[0]!.literal, depth + 1);
          return;
        }
        case "su":
          this.#su(args, depth, written);
          return;
        case "find":
          this.#find(args, depth);
          return;
        case "env": {
          const split = args.findIndex((w) => w.literal === "-S" || w.literal?.startsWith("--split-string") || /^-[i0v]*S/.test(w.literal ?? ""));
          if (split >= 0) {
            this.unverifiable.push(`env -S splits a string into a command: ${written}`);
            return;
          }
          break;
        }
      }
      const spec = WRAPPERS[name];
      if (!spec) return;
      const options = readOptions(name, args, spec);
      if (!options.ok) {
        this.unverifiable.push(options.why);
        return;
      }
      const { seen, rest } = options;
      if (name === "command" && (seen.has("-v") || seen.has("-V"))) return;
      if (name === "sudo" && seen.has("-e")) return;
      if (rest.length === 0) {
        if ((name === "sudo" && (seen.has("-i") || seen.has("-s") || seen.has("--login") || seen.has("--shell"))) || (name === "doas" && seen.has("-s")) || name === "chroot") {
          this.shells.push(written);
        }
        return;
      }
      if (name === "watch" && !seen.has("-x") && !seen.has("--exec")) {
        if (rest.some((w) => w.literal === undefined)) this.unverifiable.push(`watch of something not literal: ${written}`);
        else this.code(rest.map((w) => w.literal).join(" "), depth + 1);
        return;
      }
      // xargs gives the command its own standard input, not the pipe's.
      if (name === "xargs") {
        fed = false;
        moreArguments = true;
      }
      words = rest;
    }
  }

  #shell(args: Word[], fed: boolean, depth: number, written: string): void {
    let inline = false;
    let i = 0;
    for (; i < args.length; i++) {
      const word = args[i]!.literal;
      if (word === undefined) {
        this.unverifiable.push(`a shell with an argument that is not a literal: ${written}`);
        return;
      }
      if (word === "--" || word === "-") {
        i++;
        break;
      }
      if (["-o", "+o", "-O", "+O", "--rcfile", "--init-file"].includes(word)) {
        i++;
        continue;
      }
      if (word.startsWith("--")) continue;
      if (/^[-+][A-Za-z]+$/.test(word)) {
        if (word.startsWith("-") && word.includes("c")) inline = true;
        continue;
      }
      break;
    }
    const rest = args.slice(i);
    if (inline) {
      const code = rest[0]?.literal;
      if (code === undefined) this.unverifiable.push(`a shell runs code that is not a literal: ${written}`);
      else this.code(code, depth + 1);
      return;
    }
    // A script file: an ordinary command, like ./script.sh (what it runs is not seen).
    if (rest.length > 0) return;
    if (fed) this.unverifiable.push(`text is fed to a shell: ${written}`);
    else this.shells.push(written);
  }

  #su(args: Word[], depth: number, written: string): void {
    for (let i = 0; i < args.length; i++) {
      const word = args[i]!.literal;
      if (word === undefined) {
        this.unverifiable.push(`su with an argument that is not a literal: ${written}`);
        return;
      }
      const inline = word === "-c" || word === "--command" || word === "--session-command" ? args[i + 1]?.literal : /^--(session-)?command=/.test(word) ? word.slice(word.indexOf("=") + 1) : undefined;
      if (inline !== undefined) {
        this.code(inline, depth + 1);
        return;
      }
      if (/^-[A-Za-z]*c$/.test(word) && word !== "-c") {
        const code = args[i + 1]?.literal;
        if (code === undefined) this.unverifiable.push(`su -c of something not literal: ${written}`);
        else this.code(code, depth + 1);
        return;
      }
    }
    this.shells.push(written);
  }

  #find(args: Word[], depth: number): void {
    for (let i = 0; i < args.length; i++) {
      if (!["-exec", "-execdir", "-ok", "-okdir"].includes(args[i]!.literal ?? "")) continue;
      const command: Word[] = [];
      let j = i + 1;
      for (; j < args.length && args[j]!.literal !== ";" && args[j]!.literal !== "+"; j++) command.push(args[j]!);
      this.#invocation(command, false, depth);
      i = j;
    }
  }
}

/**
 * Parses a line and resolves every command it runs (see the module comment). Never throws for
 * bad input: what cannot be parsed is listed as unverifiable.
 */
export async function analyzeCommand(line: string): Promise<CommandAnalysis> {
  const analysis = new Analysis(await bashParser());
  analysis.code(line, 0);
  // The second grammar (mvdan/sh) must accept every text too: two parsers that disagree about a
  // line are a reason not to trust either.
  for (const text of analysis.texts) {
    try {
      await parseWithMvdanSh(text);
    } catch (error) {
      analysis.unverifiable.push(`not valid shell syntax (${(error as Error).message})`);
    }
  }
  return { commands: analysis.commands, unverifiable: analysis.unverifiable, shells: analysis.shells };
}

/**
 * History expansion in a line typed into an interactive bash (`!!`, `!-2:s/ls/rm/`, `^ls^rm`):
 * the shell runs a command built from its history, which the line does not show. Single quotes
 * stop it, and a `!` before a blank, `=` or `(` is left alone (bash's rules).
 */
const HISTORY_EXPANSION = /(?:^|[^\\'])!(?![\s=(]|$)|^\s*\^/;

export async function classifyCommand(line: string, rules: CompiledShellRules, options: { interactive?: boolean } = {}): Promise<ClassifiedCommand> {
  const text = normalizeCommand(line);
  if (!hasShellRules(rules) || text === "") return { text, verdict: "allow" };
  const analysis = await analyzeCommand(line);
  if (options.interactive && HISTORY_EXPANSION.test(line.replace(/'[^']*'/g, "''"))) analysis.unverifiable.unshift("history expansion (!, ^) runs a command from the shell's history");
  const decided = decide(text, analysis, rules);
  return analysis.shells.length > 0 ? { ...decided, startsShell: true } : decided;
}

/** The strictest verdict over the line's commands, its unverifiable parts and the shells it starts. */
function decide(text: string, analysis: CommandAnalysis, rules: CompiledShellRules): ClassifiedCommand {
  const forms = [text, ...analysis.commands.map((command) => normalizeCommand(command.text))];
  const match = (list: ShellRule[]) => list.find((rule) => forms.some((form) => rule.pattern.test(form)));
  const blocked = match(rules.block);
  if (blocked) return { text, verdict: "block", rule: blocked.source, reason: "rule" };
  const unverifiable =
    analysis.unverifiable[0] !== undefined
      ? { text, verdict: rules.unverifiable, rule: `${UNVERIFIABLE_PREFIX}${analysis.unverifiable[0]}`, reason: "unverifiable" as const }
      : undefined;
  const shell = analysis.shells[0] !== undefined ? { text, verdict: rules.shell, rule: SHELL_RULE, reason: "shell" as const } : undefined;
  if (unverifiable?.verdict === "block") return unverifiable;
  if (shell?.verdict === "block") return shell;
  const reviewed = match(rules.review);
  if (reviewed) return { text, verdict: "review", rule: reviewed.source, reason: "rule" };
  if (unverifiable?.verdict === "review") return unverifiable;
  if (shell?.verdict === "review") return shell;
  return { text, verdict: "allow" };
}
