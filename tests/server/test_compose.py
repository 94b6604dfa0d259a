"""docker-compose.yml: every part of server mode is there, wired to the keys PixRAG reads."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_compose_file_brings_up_the_whole_server_mode() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"discord", "slack", "chroma", "postgres", "minio", "minio-bucket"} <= set(services)
    for name in ("chroma", "postgres", "minio"):
        assert services[name]["healthcheck"]["test"], name
    for name, command in (("discord", ["discord"]), ("slack", ["slack"])):
        svc = services[name]
        assert svc["command"] == command
        assert [e["path"] for e in svc["env_file"]][0] == "deploy/compose.env"
        deps = svc["depends_on"]
        assert deps["postgres"]["condition"] == deps["chroma"]["condition"] == "service_healthy"
        assert deps["minio-bucket"]["condition"] == "service_completed_successfully"
        for volume in svc["volumes"]:
            assert volume.split(":")[0] in compose["volumes"]  # named volumes only
    env = _env(ROOT / "deploy" / "compose.env")
    for key in ("PIXRAG_STORE__URL", "PIXRAG_CATALOG__URL", "PIXRAG_BLOBS__URL",
                "PIXRAG_BLOBS__ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION"):
        assert env.get(key), key
    # The copies of each secret agree: the URL PixRAG uses opens the server compose starts.
    assert f":{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}" in env[
        "PIXRAG_CATALOG__URL"]
    assert env["AWS_ACCESS_KEY_ID"] == env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == env["MINIO_ROOT_PASSWORD"]
    bucket = env["PIXRAG_BLOBS__URL"].removeprefix("s3://").split("/")[0]
    assert f"local/{bucket}" in services["minio-bucket"]["command"][0]


def test_the_bots_volumes_are_writable_by_the_images_user() -> None:
    # A named volume takes its owner from the image's folder: one still owned by root leaves
    # uid 1000 unable to write there (the CLIP download into HF_HOME=/models, say).
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / dockerfile).read_text()
        owned = next(line for line in text.splitlines() if "chown pixrag" in line)
        owned_paths = owned.split("chown pixrag", 1)[1].split()
        for name in ("discord", "slack"):
            for volume in compose["services"][name]["volumes"]:
                target = volume.split(":")[1]
                assert target in owned_paths, f"{dockerfile}: {target} not owned by uid 1000"
