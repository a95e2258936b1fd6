"""`az://` backend: Azure Blob Storage (`backend.AzureBackend`) on azure-storage-blob (`client`), with
List Blobs pages (`listing`) and the URL rules and settings (`config`, which imports no SDK: the URI router
reads it to tell Azure blob URLs from plain HTTP ones). Nothing is imported here, so `config` stays light."""
