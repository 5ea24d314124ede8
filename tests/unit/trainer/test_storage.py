import pytest
from dreambooth_trainer import storage
from dreambooth_trainer.errors import StorageError, StorageNotFound


def test_file_storage_round_trip(tmp_path):
    root = (tmp_path / "bucket").as_uri()
    storage.write_bytes(storage.join(root, "a/b.bin"), b"x")
    storage.write_bytes(storage.join(root, "c.bin"), b"yz")
    assert storage.list_files(root) == ["a/b.bin", "c.bin"]
    assert storage.list_files(storage.join(root, "a")) == ["b.bin"]
    assert storage.read_bytes(storage.join(root, "c.bin")) == b"yz"
    assert storage.exists(storage.join(root, "c.bin"))
    dest = storage.download_tree(root, tmp_path / "copy")
    assert (dest / "a" / "b.bin").read_bytes() == b"x"
    storage.delete_tree(storage.join(root, "a"))
    assert storage.list_files(root) == ["c.bin"]
    assert not list((tmp_path / "bucket").glob(".*")), "no temporary files left behind"


def test_missing_objects_and_unknown_schemes(tmp_path):
    with pytest.raises(StorageNotFound):
        storage.read_bytes((tmp_path / "nope").as_uri())
    with pytest.raises(StorageNotFound):
        storage.download_tree((tmp_path / "empty").as_uri(), tmp_path / "x")
    assert storage.list_files((tmp_path / "empty").as_uri()) == []
    with pytest.raises(StorageError, match="unsupported"):
        storage.read_bytes("gs://bucket/key")


def test_s3_needs_an_endpoint(monkeypatch):
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    with pytest.raises(StorageError, match="S3_ENDPOINT"):
        storage.list_files("s3://bucket/prefix")


def test_hub_models_fail_cleanly_offline_without_leaking_the_token(monkeypatch, tmp_path):
    from dreambooth_api.dreamboothjob import BaseModelSource
    from dreambooth_trainer.errors import ModelNotFound
    from dreambooth_trainer.model import local_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    monkeypatch.setenv("DREAMBOOTH_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelNotFound) as failed:
        local_model_dir(BaseModelSource(uri="hf://runwayml/stable-diffusion-v1-5", revision="main"))
    assert "hf://runwayml/stable-diffusion-v1-5" in str(failed.value)
    assert "hf_secret_token_value" not in repr(failed.value) + str(failed.value.__cause__)


def test_a_read_with_a_limit_refuses_a_larger_object(tmp_path):
    from dreambooth_trainer.errors import StorageTooLarge

    uri = storage.join((tmp_path / "bucket").as_uri(), "big.bin")
    storage.write_bytes(uri, b"x" * 11)
    assert storage.read_bytes(uri, limit=11) == b"x" * 11
    with pytest.raises(StorageTooLarge, match="more than 10 bytes"):
        storage.read_bytes(uri, limit=10)
