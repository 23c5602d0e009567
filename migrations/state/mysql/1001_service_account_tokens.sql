-- API tokens of service accounts. Only the SHA-256 of a token is stored.
-- Numbered from 1001 so this can share a database with the SQL secret store.
CREATE TABLE IF NOT EXISTS secretd_tokens (
    name         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    service      TEXT CHARACTER SET utf8mb4 NOT NULL,
    permissions  TEXT CHARACTER SET utf8mb4 NOT NULL,
    namespaces   TEXT CHARACTER SET utf8mb4 NOT NULL,
    token_hash   CHAR(64) CHARACTER SET ascii NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
