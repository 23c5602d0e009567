-- The tenants a token reaches, as a JSON list of globs. Tokens minted before
-- tenants existed reach `main` only, as do rows inserted by older replicas.
ALTER TABLE secretd_tokens ADD COLUMN tenants TEXT NOT NULL DEFAULT '["main"]';
