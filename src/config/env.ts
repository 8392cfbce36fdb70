/**
 * `${NAME}` substitution over the parsed YAML tree. A scalar that is exactly `${NAME}` with NAME
 * unset becomes absent, so optional settings (`database`, `slack.appToken`) fall back to their
 * defaults; inside a longer string an unset variable is an error, since a half-built URL is never
 * what anyone meant.
 */
const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const WHOLE_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

export interface SubstitutionResult {
  value: unknown;
  /** path (as printed in errors) → the variable that was unset there */
  unset: Map<string, string>;
  /** paths (as printed in errors) whose value came from the environment: never echoed in errors */
  fromEnv: Set<string>;
  errors: string[];
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out === "" ? "(root)" : out;
}

export function substituteEnv(tree: unknown, env: NodeJS.ProcessEnv): SubstitutionResult {
  const unset = new Map<string, string>();
  const fromEnv = new Set<string>();
  const errors: string[] = [];

  const walk = (node: unknown, path: (string | number)[]): unknown => {
    if (typeof node === "string") {
      const whole = WHOLE_REFERENCE.exec(node);
      if (whole) {
        const name = whole[1]!;
        const value = env[name];
        if (value === undefined || value === "") {
          unset.set(formatPath(path), name);
          return undefined;
        }
        fromEnv.add(formatPath(path));
        return value;
      }
      return node.replace(REFERENCE, (_match, name: string) => {
        fromEnv.add(formatPath(path));
        const value = env[name];
        if (value === undefined) {
          errors.push(`${formatPath(path)}: environment variable ${name} is not set`);
          return "";
        }
        return value;
      });
    }
    if (Array.isArray(node)) return node.map((item, index) => walk(item, [...path, index]));
    if (node !== null && typeof node === "object") {
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(node)) {
        const substituted = walk(value, [...path, key]);
        if (substituted !== undefined) out[key] = substituted;
      }
      return out;
    }
    return node;
  };

  return { value: walk(tree, []), unset, fromEnv, errors };
}
