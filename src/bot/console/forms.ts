// The console's forms share their body reader and CSRF check with the audit pages (infra/web/forms.ts).
export * from "../../infra/web/forms.js";
