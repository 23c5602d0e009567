-- Every version of every secret. Values are AES-256-GCM ciphertexts bound to
-- (tenant, namespace, secret_key, version); tags are a JSON object.
CREATE TABLE IF NOT EXISTS secretd_secret_versions (
    tenant      TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    secret_key  TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    ciphertext  BLOB    NOT NULL,
    tags        TEXT    NOT NULL,
    description TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, namespace, secret_key, version)
);
