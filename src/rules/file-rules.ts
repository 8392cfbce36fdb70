/**
 * A target's `files: { block, review }` rules: regular expressions over the paths an SFTP request
 * changes (both paths of a rename or a link), e.g. `"^/etc/"`.
 */
export interface CompiledFileRules {
  block: { source: string; pattern: RegExp }[];
  review: { source: string; pattern: RegExp }[];
}

export function compileFileRules(files: { block: readonly string[]; review: readonly string[] }): CompiledFileRules {
  const compile = (source: string) => ({ source, pattern: new RegExp(source) });
  return { block: files.block.map(compile), review: files.review.map(compile) };
}

/** The first rule that meets any of the paths, block before review. */
export function matchFileRule(rules: CompiledFileRules, paths: readonly string[]): { verdict: "block" | "review"; rule: string } | undefined {
  const hit = (list: CompiledFileRules["block"]) => list.find((rule) => paths.some((path) => rule.pattern.test(path)));
  const blocked = hit(rules.block);
  if (blocked) return { verdict: "block", rule: blocked.source };
  const reviewed = hit(rules.review);
  return reviewed ? { verdict: "review", rule: reviewed.source } : undefined;
}
