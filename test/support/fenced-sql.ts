// The SQL of the README's PostgreSQL fencing recipe, shared by the test and its holder process.

/** The table: each row remembers the highest fencing token that wrote it. */
export const FENCED_TABLE = `
CREATE TABLE invoices (
  id            text   PRIMARY KEY,
  state         text   NOT NULL,
  fencing_token bigint NOT NULL DEFAULT 0
);`;

/**
 * The fenced write (psql variables :'id', :'state', :'token'): applied only when no newer holder
 * wrote the row; prints how many rows it changed (0: refused, our hold is stale).
 */
export const FENCED_UPDATE = `
WITH fenced AS (
  UPDATE invoices SET state = :'state', fencing_token = :'token'::bigint
   WHERE id = :'id' AND fencing_token <= :'token'::bigint
  RETURNING 1
)
SELECT count(*) FROM fenced;`;
