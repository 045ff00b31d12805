"""The storage account a connection names: a connection string or identity-based settings,
read as the Functions host reads them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage_access import StorageConfigError, StorageIdentity, resolve_storage_account

CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;"
    "EndpointSuffix=core.windows.net"
)
MI = {"AzureWebJobsStorage__credential": "managedidentity"}


@pytest.mark.parametrize(
    "setting",
    ["AzureWebJobsStorage", "azurewebjobsstorage", "ConnectionStrings__AzureWebJobsStorage"],
)
def test_a_connection_string_is_found_under_the_names_the_host_tries(setting):
    account = resolve_storage_account("AzureWebJobsStorage", {setting: CONNECTION})
    assert account.connection_string == CONNECTION
    assert not account.identity_based
    assert "c2VjcmV0" not in repr(account)


def test_azurewebjobs_prefixed_names_count_too():
    account = resolve_storage_account("Storage", {"AzureWebJobsStorage": CONNECTION})
    assert account.connection_string == CONNECTION


def test_service_uris_with_a_user_assigned_managed_identity():
    account = resolve_storage_account(
        "AzureWebJobsStorage",
        {
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net/",
            "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
            "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        },
    )
    assert account.identity_based
    assert account.service_uri("queue") == "https://acct.queue.core.windows.net"
    assert account.service_uri("table") == "https://acct.table.core.windows.net"
    assert account.identity == StorageIdentity(
        managed_identity=True, client_id="11111111-2222-3333-4444-555555555555"
    )


def test_an_account_name_gives_the_public_cloud_uris_and_a_service_uri_wins_for_its_service():
    account = resolve_storage_account(
        "AzureWebJobsStorage",
        {
            "AzureWebJobsStorage__accountName": "Acct1",
            "AzureWebJobsStorage__queueServiceUri": "https://q.example.net",
        },
    )
    assert account.service_uri("blob") == "https://acct1.blob.core.windows.net"
    assert account.service_uri("queue") == "https://q.example.net"
    assert account.identity == StorageIdentity(managed_identity=False)


def test_a_blob_only_connection_names_the_missing_service_when_asked():
    account = resolve_storage_account(
        "AzureWebJobsStorage",
        {"AzureWebJobsStorage__serviceUri": "https://acct.blob.core.windows.net"},
    )
    with pytest.raises(StorageConfigError, match="AzureWebJobsStorage__queueServiceUri"):
        account.service_uri("queue")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({}, "AzureWebJobsStorage"),
        (
            {"AzureWebJobsStorage__credential": "managedidentity"},
            "AzureWebJobsStorage__accountName",
        ),
        (
            {
                "AzureWebJobsStorage__accountName": "acct",
                "AzureWebJobsStorage__credential": "clientsecret",
            },
            "AzureWebJobsStorage__credential",
        ),
        (
            {
                "AzureWebJobsStorage__accountName": "acct",
                "AzureWebJobsStorage__clientId": "x",
                "AzureWebJobsStorage__managedIdentityResourceId": "y",
            },
            "not both",
        ),
        ({"AzureWebJobsStorage__queueServiceUri": "http://acct.queue.example.net"}, "https"),
        ({"AzureWebJobsStorage__queueServiceUri": "acct.queue.example.net"}, "https"),
        ({"AzureWebJobsStorage__accountName": "not an account!"}, "accountName"),
    ],
)
def test_bad_settings_name_the_setting(settings, named):
    with pytest.raises(StorageConfigError) as caught:
        resolve_storage_account("AzureWebJobsStorage", settings)
    assert named in str(caught.value)


def test_http_is_allowed_for_a_loopback_emulator_only():
    account = resolve_storage_account(
        "AzureWebJobsStorage",
        {"AzureWebJobsStorage__queueServiceUri": "http://127.0.0.1:10001/devstoreaccount1"},
    )
    assert account.service_uri("queue") == "http://127.0.0.1:10001/devstoreaccount1"


@given(secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=12, max_size=40))
def test_errors_never_quote_a_value(secret):
    settings = {
        "AzureWebJobsStorage__queueServiceUri": f"ftp://{secret}",
        "AzureWebJobsStorage__credential": secret,
    }
    with pytest.raises(StorageConfigError) as caught:
        resolve_storage_account("AzureWebJobsStorage", settings)
    assert secret not in str(caught.value)
