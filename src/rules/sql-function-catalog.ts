/**
 * Functions whose name alone decides a built-in rule, wherever the name appears in a statement: a
 * call, but also an operator, aggregate or cast built over the function (`CREATE OPERATOR ###
 * (FUNCTION = pg_read_file, …)`), which would call it later without naming it. Names are
 * compared as the parser leaves them (unquoted names are lower-cased; a quoted `"PG_READ_FILE"`
 * is another, non-existent function). https://www.postgresql.org/docs/current/functions-admin.html
 */

/** Read or write files and directories of the database server, or run on them. */
export const SERVER_FILE_FUNCTIONS: ReadonlySet<string> = new Set([
  "pg_read_file",
  "pg_read_binary_file",
  "pg_stat_file",
  "pg_ls_dir",
  "pg_ls_logdir",
  "pg_ls_waldir",
  "pg_ls_tmpdir",
  "pg_ls_archive_statusdir",
  "pg_ls_logicalsnapdir",
  "pg_ls_logicalmapdir",
  "pg_ls_replslotdir",
  "pg_current_logfile",
  // adminpack
  "pg_file_write",
  "pg_file_rename",
  "pg_file_unlink",
  "pg_file_sync",
  "pg_logdir_ls",
  // Server-side large-object import and export read and write server files.
  "lo_import",
  "lo_export",
]);

/** Server-side large-object functions: they read and write data that no table rule or mask sees. */
export const LARGE_OBJECT_FUNCTIONS: ReadonlySet<string> = new Set([
  "lo_create",
  "lo_creat",
  "lo_open",
  "lo_close",
  "lo_get",
  "lo_put",
  "lo_from_bytea",
  "lo_unlink",
  "lo_truncate",
  "lo_truncate64",
  "lo_lseek",
  "lo_lseek64",
  "lo_tell",
  "lo_tell64",
  "loread",
  "lowrite",
  "lo_import",
  "lo_export",
]);

/** Open connections to another server, or to this one as someone else (dblink, postgres_fdw). */
export const REMOTE_CONNECTION_FUNCTIONS: ReadonlySet<string> = new Set([
  "dblink",
  "dblink_exec",
  "dblink_connect",
  "dblink_connect_u",
  "dblink_send_query",
  "dblink_open",
  "dblink_fetch",
  "dblink_get_result",
  "dblink_build_sql_insert",
  "dblink_build_sql_update",
  "dblink_build_sql_delete",
  "postgres_fdw_disconnect",
  "postgres_fdw_disconnect_all",
]);

/** Statement types that set up foreign servers and their connections. */
export const REMOTE_CONNECTION_STATEMENTS: ReadonlySet<string> = new Set([
  "CreateForeignServerStmt",
  "AlterForeignServerStmt",
  "CreateUserMappingStmt",
  "AlterUserMappingStmt",
  "CreateForeignTableStmt",
  "ImportForeignSchemaStmt",
  "CreateFdwStmt",
  "AlterFdwStmt",
]);

/** Replication slots, logical decoding and replication origins: a copy of every change, or a hand in it. */
export const REPLICATION_FUNCTIONS: ReadonlySet<string> = new Set([
  "pg_create_physical_replication_slot",
  "pg_create_logical_replication_slot",
  "pg_copy_physical_replication_slot",
  "pg_copy_logical_replication_slot",
  "pg_drop_replication_slot",
  "pg_replication_slot_advance",
  "pg_logical_slot_get_changes",
  "pg_logical_slot_peek_changes",
  "pg_logical_slot_get_binary_changes",
  "pg_logical_slot_peek_binary_changes",
  "pg_logical_emit_message",
  "pg_replication_origin_create",
  "pg_replication_origin_drop",
  "pg_replication_origin_session_setup",
  "pg_replication_origin_advance",
  "pg_replication_origin_xact_setup",
]);

export const REPLICATION_STATEMENTS: ReadonlySet<string> = new Set([
  "CreateSubscriptionStmt",
  "AlterSubscriptionStmt",
  "CreatePublicationStmt",
  "AlterPublicationStmt",
]);

/**
 * Functions that run SQL given to them as text, and which argument holds it (0-based). When that
 * argument is a string constant its text is classified like any statement; otherwise what runs is
 * only known when it runs, and the call is unverifiable. https://www.postgresql.org/docs/current/functions-xml.html#FUNCTIONS-XML-MAPPING,
 * https://www.postgresql.org/docs/current/textsearch-features.html, contrib/tablefunc.
 */
export const SQL_TEXT_FUNCTIONS: ReadonlyMap<string, readonly number[]> = new Map([
  ["query_to_xml", [0]],
  ["query_to_xmlschema", [0]],
  ["query_to_xml_and_xmlschema", [0]],
  ["ts_stat", [0]],
  ["ts_rewrite", [1]],
  ["crosstab", [0, 1]],
  ["crosstab2", [0]],
  ["crosstab3", [0]],
  ["crosstab4", [0]],
  ["connectby", []],
  ["xpath_table", []],
]);

/**
 * Functions that run SQL later or elsewhere, outside the session and past the grant's end
 * (pg_cron jobs, pg_background workers): what they run cannot be verified under this grant.
 */
export const DEFERRED_SQL_FUNCTIONS: ReadonlySet<string> = new Set([
  "schedule",
  "schedule_in_database",
  "alter_job",
  "pg_background_launch",
]);

/** The function that changes any setting (the same as SET); see `PINNED_SETTINGS`. */
export const SET_CONFIG = "set_config";
