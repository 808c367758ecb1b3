"""Where the Content-Security-Policy lets the player load a video from: the presigned URL's origin."""

from __future__ import annotations

from backend.lib.security_headers import media_sources
from gpu_worker.store import StoreSettings


def test_the_local_store_needs_no_other_origin() -> None:
    assert media_sources(StoreSettings(backend="local")) == []


def test_aws_presigns_on_a_bucket_subdomain_of_amazonaws() -> None:
    assert media_sources(StoreSettings(backend="s3", bucket="v")) == ["https://*.amazonaws.com"]


def test_the_public_endpoint_wins_over_the_internal_one() -> None:
    storage = StoreSettings(
        backend="s3",
        bucket="v",
        endpoint_url="http://minio:9000",
        public_endpoint_url="https://media.example.com",
        path_style=True,
    )
    assert media_sources(storage) == ["https://media.example.com"]


def test_without_path_style_the_bucket_may_be_a_subdomain_of_the_endpoint() -> None:
    storage = StoreSettings(backend="s3", bucket="v", endpoint_url="https://s3.example.com")
    assert media_sources(storage) == ["https://s3.example.com", "https://*.s3.example.com"]
