-- The tenants a token reaches, as a JSON list of globs. Tokens minted before
-- tenants existed reach `main` only, as do rows inserted by older replicas.
-- VARCHAR rather than TEXT: every MySQL and MariaDB takes a literal default
-- for it. 4096 holds the at most 32 globs of 63 characters a token may have.
ALTER TABLE secretd_tokens ADD COLUMN tenants VARCHAR(4096) CHARACTER SET ascii NOT NULL DEFAULT '["main"]';
