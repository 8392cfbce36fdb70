import { Parser, Language } from "web-tree-sitter";
await Parser.init();
const bash = await Language.load("node_modules/tree-sitter-bash/tree-sitter-bash.wasm");
const parser = new Parser(); parser.setLanguage(bash);
const show = (n, d=0) => { console.log("  ".repeat(d) + n.type + (n.childCount===0 ? " " + JSON.stringify(n.text) : "")); for (const c of n.children) show(c, d+1); };
show(parser.parse(process.argv[2]).rootNode);
