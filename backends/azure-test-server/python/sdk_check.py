"""Drives the Key Vault test server with Microsoft's own Python SDK
(azure-keyvault-secrets), so the server is held to the real client and not
only to our reading of the REST API. Run by tests/python_sdk.rs, which
starts the server and passes it in the environment:

  SECRETD_TEST_AZURE_URL       the vault URL (https://localhost:PORT)
  SECRETD_TEST_AZURE_CA_FILE   the CA that signed the server's certificate
  SECRETD_TEST_AZURE_TOKEN     the bearer token the vault accepts

Exits non-zero (an assertion or SDK error) at the first difference.
"""

import datetime
import os
import sys
import time

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

# More secrets than the server puts on a page (five), so listing pages.
LISTED = 12
PAGE_SIZE = 5


class FixedToken:
    """A TokenCredential handing out the one token the server accepts: the
    server's token endpoint is covered by the Rust tests, this checks the
    vault API."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        assert scopes == ("https://vault.azure.net/.default",), scopes
        return AccessToken(self._token, int(time.time()) + 3600)


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


def main():
    client = SecretClient(
        vault_url=os.environ["SECRETD_TEST_AZURE_URL"],
        credential=FixedToken(os.environ["SECRETD_TEST_AZURE_TOKEN"]),
        connection_verify=os.environ["SECRETD_TEST_AZURE_CA_FILE"],
        # The server is localhost, not *.vault.azure.net.
        verify_challenge_resource=False,
    )

    # set, get, a specific version
    first = client.set_secret("sdk-db-password", "first value", content_type="text/plain", tags={"team": "etl"})
    check(first.value == "first value", "set returns the value")
    check(first.properties.version and len(first.properties.version) == 32, "set returns a version")
    check(first.properties.content_type == "text/plain", "set keeps the content type")
    check(first.properties.tags == {"team": "etl"}, "set keeps the tags")
    check(first.properties.enabled is True, "a new secret is enabled")
    check(first.properties.created_on is not None, "a secret has a creation time")
    second = client.set_secret("sdk-db-password", "second value")
    check(second.properties.version != first.properties.version, "a second set makes a new version")

    latest = client.get_secret("sdk-db-password")
    check(latest.value == "second value", "get returns the latest version")
    check(latest.properties.version == second.properties.version, "get names the latest version")
    check(latest.name == "sdk-db-password", "get names the secret")
    old = client.get_secret("sdk-db-password", first.properties.version)
    check(old.value == "first value", "get of a version returns that version's value")
    check(old.properties.tags == {"team": "etl"}, "an old version keeps its tags")
    try:
        client.get_secret("sdk-never-set")
        check(False, "get of a missing secret raises")
    except ResourceNotFoundError:
        pass

    # versions
    versions = {p.version for p in client.list_properties_of_secret_versions("sdk-db-password")}
    check(versions == {first.properties.version, second.properties.version}, f"versions listed: {versions}")

    # tags
    updated = client.update_secret_properties(
        "sdk-db-password", second.properties.version, tags={"team": "etl", "rotated": "yes"}, content_type="text/x"
    )
    check(updated.tags == {"team": "etl", "rotated": "yes"}, "update sets the tags")
    check(updated.content_type == "text/x", "update sets the content type")
    check(updated.version == second.properties.version, "update keeps the version")
    check(client.get_secret("sdk-db-password").properties.tags == updated.tags, "get sees the new tags")

    # activation and expiry dates, set and updated; disabling
    not_before = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    expires_on = datetime.datetime(2031, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc)
    dated = client.set_secret("sdk-dated", "dated value", not_before=not_before, expires_on=expires_on)
    check(dated.properties.not_before == not_before, f"set keeps not_before: {dated.properties.not_before}")
    check(dated.properties.expires_on == expires_on, f"set keeps expires_on: {dated.properties.expires_on}")
    check(client.get_secret("sdk-dated").properties.expires_on == expires_on, "get returns expires_on")
    later = expires_on + datetime.timedelta(days=1)
    moved = client.update_secret_properties("sdk-dated", expires_on=later, enabled=False)
    check(moved.expires_on == later, f"update sets expires_on: {moved.expires_on}")
    check(moved.not_before == not_before, "update keeps what it was not given")
    check(moved.enabled is False, "update disables")
    try:
        client.get_secret("sdk-dated")
        check(False, "a disabled secret cannot be read")
    except HttpResponseError as e:
        check(e.status_code == 403, f"a disabled secret reads as 403: {e.status_code}")
    listed_dated = [p for p in client.list_properties_of_secret_versions("sdk-dated")]
    check([p.expires_on for p in listed_dated] == [later], "versions list expires_on")
    client.begin_delete_secret("sdk-dated").result()
    client.purge_deleted_secret("sdk-dated")

    # list with paging
    names = {f"sdk-listed-{i:02}" for i in range(LISTED)}
    for name in sorted(names):
        client.set_secret(name, f"value of {name}")
    pages = [list(page) for page in client.list_properties_of_secrets(max_page_size=PAGE_SIZE).by_page()]
    listed = [p.name for page in pages for p in page]
    check(len(pages) >= 3, f"{LISTED + 1} secrets come in pages of {PAGE_SIZE}: got {len(pages)} pages")
    check(all(len(page) <= PAGE_SIZE for page in pages), "no page holds more than max_page_size")
    check(len(listed) == len(set(listed)), f"no secret is listed twice: {listed}")
    check(set(listed) == names | {"sdk-db-password"}, f"every secret is listed once: {sorted(listed)}")

    # delete, deleted, recover
    deleted = client.begin_delete_secret("sdk-db-password").result()
    check(deleted.name == "sdk-db-password", "delete names the secret")
    check(deleted.recovery_id is not None, "a soft-deleted secret has a recovery id")
    check(deleted.deleted_date is not None, "a soft-deleted secret has a deletion date")
    try:
        client.get_secret("sdk-db-password")
        check(False, "a deleted secret cannot be read")
    except ResourceNotFoundError:
        pass
    check(client.get_deleted_secret("sdk-db-password").name == "sdk-db-password", "get_deleted_secret finds it")
    check("sdk-db-password" in {d.name for d in client.list_deleted_secrets()}, "list_deleted_secrets lists it")
    recovered = client.begin_recover_deleted_secret("sdk-db-password").result()
    check(recovered.name == "sdk-db-password", "recover names the secret")
    check(client.get_secret("sdk-db-password").value == "second value", "a recovered secret reads again")

    # delete and purge
    client.begin_delete_secret("sdk-listed-00").result()
    client.purge_deleted_secret("sdk-listed-00")
    try:
        client.get_deleted_secret("sdk-listed-00")
        check(False, "a purged secret is gone from the deleted secrets")
    except ResourceNotFoundError:
        pass
    client.set_secret("sdk-listed-00", "set again after purge")
    check(client.get_secret("sdk-listed-00").value == "set again after purge", "a purged name can be set again")

    # the deleted secrets, paged too
    for name in sorted(names - {"sdk-listed-00"}):
        client.begin_delete_secret(name).result()
    deleted_pages = [list(page) for page in client.list_deleted_secrets(max_page_size=PAGE_SIZE).by_page()]
    deleted_names = [d.name for page in deleted_pages for d in page]
    check(len(deleted_pages) >= 3, f"{LISTED - 1} deleted secrets come in pages: got {len(deleted_pages)}")
    check(sorted(deleted_names) == sorted(names - {"sdk-listed-00"}), f"deleted listed once: {deleted_names}")

    print("azure-keyvault-secrets: all checks passed")


if __name__ == "__main__":
    main()
