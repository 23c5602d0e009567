-- API tokens of service accounts. Only the SHA-256 of a token is stored.
-- Numbered from 1001 so this can share a database with the SQL secret store.
CREATE TABLE IF NOT EXISTS secretd_tokens (
    name         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    service      TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    namespaces   TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
