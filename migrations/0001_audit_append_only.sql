-- The audit log is append-only: the database itself refuses to change or remove a row, so a bug or
-- a compromised gateway process cannot rewrite history. Only a superuser who disables the triggers
-- can, and `jitgate audit verify` then finds the broken link in the hash chain.
CREATE OR REPLACE FUNCTION jitgate_audit_refuse_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = '42501';
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER audit_events_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION jitgate_audit_refuse_change();
--> statement-breakpoint
CREATE TRIGGER audit_events_no_truncate
  BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION jitgate_audit_refuse_change();
