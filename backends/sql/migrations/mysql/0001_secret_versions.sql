-- Every version of every secret. Values are AES-256-GCM ciphertexts bound to
-- (tenant, namespace, secret_key, version); tags are a JSON object.
-- Names are ASCII by secretd's rules; ascii_bin makes them case-sensitive
-- and byte-ordered, as on the other databases, and keeps the key short
-- enough for InnoDB's index limit.
CREATE TABLE IF NOT EXISTS secretd_secret_versions (
    tenant      VARCHAR(63)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    namespace   VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    secret_key  VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version     BIGINT       NOT NULL,
    ciphertext  MEDIUMBLOB   NOT NULL,
    tags        TEXT         CHARACTER SET utf8mb4 NOT NULL,
    description TEXT         CHARACTER SET utf8mb4,
    created_at  BIGINT       NOT NULL,
    PRIMARY KEY (tenant, namespace, secret_key, version)
) ENGINE=InnoDB;
