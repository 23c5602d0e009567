-- Every version of every secret. Values are AES-256-GCM ciphertexts bound to
-- (tenant, namespace, secret_key, version); tags are a JSON object.
-- COLLATE "C": byte order and case-sensitive, the same on every database.
CREATE TABLE IF NOT EXISTS secretd_secret_versions (
    tenant      TEXT COLLATE "C" NOT NULL,
    namespace   TEXT COLLATE "C" NOT NULL,
    secret_key  TEXT COLLATE "C" NOT NULL,
    version     BIGINT  NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    tags        TEXT    NOT NULL,
    description TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, namespace, secret_key, version)
);
